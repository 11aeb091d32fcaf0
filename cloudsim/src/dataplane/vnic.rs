//! `ackemu-vnic`: an ECS instance's virtual NIC, and the instance's init.
//!
//! Started by the local hypervisor backend in the host namespace, it opens
//! its underlay UDP socket there (connected to the fabric), moves into the
//! instance's namespace, creates the TUN device `eth0`, gives it the ENI's
//! address, MTU and a default route through the VSwitch gateway, says
//! hello to the fabric, prints `ready`, and starts the instance's UserData
//! (`ip netns exec <ns> /bin/sh <user-data>`). Then it pumps packets: TUN
//! reads (several per wakeup) go out in one `sendmmsg`, `recvmmsg` batches
//! are written into the TUN. It is a child subreaper, so everything the
//! UserData starts stays its descendant; on SIGTERM it stops them all
//! (TERM, a grace period, KILL) and exits.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ipnet::Ipv4Net;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::Interest;
use tokio::signal::unix::{SignalKind, signal};
use tun_tap::{Iface, Mode};

use super::batch::{self, BATCH, RecvBatch, SendHeaders};
use super::netns::{self, DataplaneError, Result};
use super::wire;

/// The environment variable carrying the hello token (not argv: `ps`
/// shows argv to everyone).
pub const TOKEN_ENV: &str = "ACKEMU_VNIC_TOKEN";

#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "ackemu-vnic",
    about = "An ECS instance's virtual NIC (TUN ⇄ VPC fabric) and init"
)]
pub struct VnicArgs {
    /// The instance's network namespace (`ip netns` name).
    #[arg(long)]
    pub netns: String,
    #[arg(long)]
    pub instance_id: String,
    /// The fabric's underlay address.
    #[arg(long)]
    pub fabric: SocketAddrV4,
    /// The ENI address with the VSwitch prefix, e.g. 192.168.0.1/24.
    #[arg(long)]
    pub address: Ipv4Net,
    /// The VSwitch gateway (default route).
    #[arg(long)]
    pub gateway: Ipv4Addr,
    #[arg(long, default_value_t = 1500)]
    pub mtu: usize,
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
    /// UserData script to run once the NIC is up.
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// Where the UserData's output goes.
    #[arg(long)]
    pub user_data_log: Option<PathBuf>,
    /// `KEY=VALUE` added to the UserData's environment.
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// How long stopping waits for the instance's processes after SIGTERM.
    #[arg(long, default_value_t = 3000)]
    pub stop_grace_ms: u64,
    #[arg(long, default_value_t = 4 << 20)]
    pub socket_buffer_bytes: usize,
    /// Empty polls before the pump goes back to sleep after traffic (0:
    /// sleep at once). Trades a little CPU for one wakeup less per hop.
    #[arg(long, default_value_t = 16)]
    pub spin_polls: usize,
    #[arg(long = "v", default_value_t = 0)]
    pub v: u8,
}

/// The NIC after [`setup`]: the underlay socket (host namespace) and the
/// TUN device (instance namespace).
pub struct Nic {
    udp: std::net::UdpSocket,
    tun: Iface,
    token: String,
}

fn ip_in_ns(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| DataplaneError::new(format!("running ip {}", args.join(" ")), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DataplaneError::new(
            format!("ip {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ))
    }
}

/// Opens the underlay socket, enters the namespace, creates and configures
/// the TUN device. Call on the main thread before any runtime starts: the
/// thread stays in the instance's namespace (and so do its children).
pub fn setup(args: &VnicArgs) -> Result<Nic> {
    let token = std::env::var(TOKEN_ENV).map_err(|_| {
        DataplaneError::new("reading the hello token", format!("{TOKEN_ENV} is not set"))
    })?;
    // The underlay is loopback on one machine; in docker-compose it is
    // the compose network (the fabric is another container).
    let local = if args.fabric.ip().is_loopback() {
        Ipv4Addr::LOCALHOST
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let udp = std::net::UdpSocket::bind((local, 0))
        .map_err(|e| DataplaneError::new("binding the underlay socket", e))?;
    udp.connect(SocketAddr::V4(args.fabric))
        .map_err(|e| DataplaneError::new(format!("connecting to the fabric {}", args.fabric), e))?;
    super::fabric::set_buffers(&udp, args.socket_buffer_bytes);
    netns::enter(&args.netns)?;
    let tun = Iface::without_packet_info(&args.ifname, Mode::Tun)
        .map_err(|e| DataplaneError::new(format!("creating tun device {}", args.ifname), e))?;
    tun.set_non_blocking()
        .map_err(|e| DataplaneError::new("making the tun non-blocking", e))?;
    let name = tun.name().to_owned();
    // No IPv6 on the ENI: the VPC is IPv4-only, and router solicitations
    // would only be counted as malformed by the fabric.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    let mtu = args.mtu.to_string();
    let addr = args.address.to_string();
    let gw = args.gateway.to_string();
    ip_in_ns(&["link", "set", "lo", "up"])?;
    ip_in_ns(&["link", "set", &name, "mtu", &mtu, "up"])?;
    ip_in_ns(&["addr", "replace", &addr, "dev", &name])?;
    ip_in_ns(&["route", "replace", "default", "via", &gw, "dev", &name])?;
    Ok(Nic { udp, tun, token })
}

#[derive(Debug, Default)]
struct Counters {
    tx: u64,
    rx: u64,
    tun_write_drops: u64,
    underlay_drops: u64,
}

/// Moves packets between the TUN and the underlay. Batches are read either
/// through tokio (`try_io`, which keeps its readiness state right) or
/// directly (while spinning; see [`Pump::spin`]).
struct Pump<'a> {
    tun: &'a tokio::io::unix::AsyncFd<Iface>,
    udp: &'a tokio::net::UdpSocket,
    fd: std::os::fd::RawFd,
    from_tun: RecvBatch,
    from_udp: RecvBatch,
    hdrs: SendHeaders,
    c: Counters,
}

impl Pump<'_> {
    /// One batch TUN → underlay; returns the packets read.
    fn tun_batch(&mut self, direct: bool) -> Result<usize> {
        self.from_tun.clear();
        let mut n = 0;
        while n < BATCH {
            let buf = self.from_tun.slot_mut(n);
            let r = if direct {
                self.tun.get_ref().recv(buf)
            } else {
                self.tun.try_io(Interest::READABLE, |t| t.recv(buf))
            };
            match r {
                Ok(len) => {
                    self.from_tun.set_len(n, len);
                    n += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(DataplaneError::new("reading the tun", e)),
            }
        }
        if n == 0 {
            return Ok(0);
        }
        let mut pkts: [(&[u8], Option<SocketAddrV4>); BATCH] = [(&[][..], None); BATCH];
        for (i, p) in pkts.iter_mut().enumerate().take(n) {
            *p = (self.from_tun.get(i).0, None);
        }
        let mut done = 0;
        let mut full = 0;
        while done < n {
            match batch::send(&mut self.hdrs, self.fd, &pkts[done..n]) {
                Ok(k) => done += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && full < 64 => {
                    // The send buffer is full: let the fabric drain it.
                    full += 1;
                    std::thread::yield_now();
                }
                Err(_) => {
                    // No fabric (ECONNREFUSED while it restarts) or still
                    // full: the packets are lost, as on a congested link.
                    self.c.underlay_drops += (n - done) as u64;
                    break;
                }
            }
        }
        self.c.tx += done as u64;
        Ok(n)
    }

    /// One batch underlay → TUN; returns the datagrams received.
    fn udp_batch(&mut self, direct: bool) -> usize {
        let rb = &mut self.from_udp;
        let fd = self.fd;
        let r = if direct {
            rb.recv(fd)
        } else {
            self.udp.try_io(Interest::READABLE, || rb.recv(fd))
        };
        let Ok(n) = r else {
            // WouldBlock, or ECONNREFUSED while the fabric restarts.
            return 0;
        };
        for i in 0..n {
            let (p, _, truncated) = self.from_udp.get(i);
            if truncated {
                self.c.tun_write_drops += 1;
                continue;
            }
            match self.tun.get_ref().send(p) {
                Ok(_) => self.c.rx += 1,
                Err(_) => self.c.tun_write_drops += 1,
            }
        }
        n
    }

    /// Drains both directions through tokio until neither has anything.
    fn drain(&mut self) -> Result<()> {
        for _ in 0..64 {
            let a = self.tun_batch(false)?;
            let b = self.udp_batch(false);
            if a < BATCH && b < BATCH {
                break;
            }
        }
        Ok(())
    }

    /// Keeps polling both directions directly for `polls` empty rounds
    /// (yielding the CPU between them) before going back to sleep: the
    /// answer to what was just sent usually arrives within microseconds,
    /// and catching it here saves a wakeup per hop.
    fn spin(&mut self, polls: usize) -> Result<()> {
        let mut idle = 0;
        while idle < polls {
            let n = self.tun_batch(true)? + self.udp_batch(true);
            if n == 0 {
                idle += 1;
                std::thread::yield_now();
            } else {
                idle = 0;
            }
        }
        Ok(())
    }
}

fn start_user_data(args: &VnicArgs) -> Result<()> {
    let Some(script) = &args.user_data else {
        return Ok(());
    };
    let log = match &args.user_data_log {
        Some(p) => std::fs::File::create(p)
            .map_err(|e| DataplaneError::new(format!("creating {}", p.display()), e))?,
        None => std::fs::File::create("/dev/null")
            .map_err(|e| DataplaneError::new("opening /dev/null", e))?,
    };
    let err = log
        .try_clone()
        .map_err(|e| DataplaneError::new("duplicating the user-data log", e))?;
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &args.netns, "/bin/sh"])
        .arg(script)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .env_remove(TOKEN_ENV)
        .env("ACKEMU_INSTANCE_ID", &args.instance_id);
    for kv in &args.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let child = cmd
        .spawn()
        .map_err(|e| DataplaneError::new("starting the user data", e))?;
    tracing::info!("user data started as pid {}", child.id());
    // Reaped through SIGCHLD with the rest of the instance's processes.
    drop(child);
    Ok(())
}

fn reap() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Stops every descendant: TERM, up to `grace`, then KILL.
async fn stop_instance(grace: Duration) {
    let me = std::process::id() as i32;
    let clock = Clock::real();
    let kids = netns::descendants(me);
    for p in &kids {
        netns::signal(*p, Signal::SIGTERM);
    }
    let deadline = clock.now() + grace;
    while !netns::descendants(me).is_empty() && clock.now() < deadline {
        reap();
        clock.sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..50 {
        let left = netns::descendants(me);
        if left.is_empty() {
            break;
        }
        for p in left {
            netns::signal(p, Signal::SIGKILL);
        }
        reap();
        clock.sleep(Duration::from_millis(20)).await;
    }
    reap();
}

/// Pumps packets until SIGTERM/SIGINT, then stops the instance's processes.
pub async fn run(nic: Nic, args: &VnicArgs) -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| DataplaneError::new("becoming a child subreaper", e))?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| DataplaneError::new("sigterm", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| DataplaneError::new("sigint", e))?;
    let mut chld = signal(SignalKind::child()).map_err(|e| DataplaneError::new("sigchld", e))?;
    nic.udp
        .set_nonblocking(true)
        .map_err(|e| DataplaneError::new("underlay socket", e))?;
    let udp = tokio::net::UdpSocket::from_std(nic.udp)
        .map_err(|e| DataplaneError::new("registering the underlay socket", e))?;
    let tun = super::fabric::register_tun(nic.tun)
        .map_err(|e| DataplaneError::new("registering the tun", e))?;
    let hello = wire::hello(&args.instance_id, &nic.token);
    let _ = udp.send(&hello).await;
    if let Err(e) = start_user_data(args) {
        // The instance runs without it, as an ECS whose cloud-init failed.
        tracing::error!("instance {}: {e}", args.instance_id);
    }

    let slot = args.mtu.max(576) + 64;
    let mut pump = Pump {
        tun: &tun,
        udp: &udp,
        fd: udp.as_raw_fd(),
        from_tun: RecvBatch::new(slot),
        from_udp: RecvBatch::new(slot),
        hdrs: SendHeaders::default(),
        c: Counters::default(),
    };
    let mut hello_tick = Clock::real().interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = chld.recv() => reap(),
            _ = hello_tick.tick() => { let _ = udp.send(&hello).await; }
            g = tun.readable() => {
                drop(g.map_err(|e| DataplaneError::new("waiting on the tun", e))?);
                pump.drain()?;
                pump.spin(args.spin_polls)?;
            }
            r = udp.readable() => {
                r.map_err(|e| DataplaneError::new("waiting on the underlay", e))?;
                pump.drain()?;
                pump.spin(args.spin_polls)?;
            }
        }
    }
    let c = pump.c;
    tracing::info!(
        "vnic {}: stopping (sent {}, received {}, tun write drops {}, underlay drops {})",
        args.instance_id,
        c.tx,
        c.rx,
        c.tun_write_drops,
        c.underlay_drops
    );
    stop_instance(Duration::from_millis(args.stop_grace_ms)).await;
    Ok(())
}

/// `ready` on stdout tells the backend the NIC is configured.
pub fn announce_ready() {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "ready");
    let _ = out.flush();
}
