//! `ackemu forward`: the launcher's TCP plumbing between the host and the
//! instances' network namespaces, like kind's port mappings.
//!
//! A map is `LISTEN=CONNECT`, each side `[netns/]ip:port`; no prefix is
//! the host namespace. The listening socket is opened inside its namespace
//! and every outgoing socket inside the target's (a short-lived thread
//! that `setns`es, creates the socket and ends, so nothing pins a
//! namespace); bytes are copied both ways. Nothing is routed: the host
//! only ever binds loopback addresses, and only the namespace side names
//! emulated addresses.
//!
//! Used for kubectl → the API server in the master instance, the host →
//! admin ports of processes in instances, and the master's processes →
//! the store members on the host's loopback (the store's underlay).

use std::net::SocketAddr;
use std::sync::Arc;

use ackemu_base::tasks::Tasks;
use anyhow::Context as _;
use tokio::sync::{Semaphore, oneshot};

/// Connections in flight per map.
const MAX_CONNS: usize = 512;

/// One side of a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Network namespace (`None`: the host's).
    pub netns: Option<String>,
    /// Address inside it.
    pub addr: SocketAddr,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.netns {
            Some(ns) => write!(f, "{ns}/{}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (netns, addr) = match s.rsplit_once('/') {
            Some((ns, a)) if !ns.is_empty() => (Some(ns.to_owned()), a),
            Some(_) => return Err(format!("{s:?}: empty namespace before '/'")),
            None => (None, s),
        };
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| format!("{s:?}: expected [netns/]ip:port: {e}"))?;
        if netns.is_none() && !addr.ip().is_loopback() {
            return Err(format!(
                "{s:?}: host-side addresses must be loopback (emulated addresses live only in namespaces)"
            ));
        }
        Ok(Endpoint { netns, addr })
    }
}

/// `LISTEN=CONNECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Map {
    pub listen: Endpoint,
    pub connect: Endpoint,
}

impl std::fmt::Display for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.listen, self.connect)
    }
}

impl std::str::FromStr for Map {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (l, c) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected LISTEN=CONNECT"))?;
        Ok(Map {
            listen: l.parse()?,
            connect: c.parse()?,
        })
    }
}

/// `ackemu forward`.
#[derive(clap::Args, Debug, Clone)]
pub struct ForwardArgs {
    /// `[netns/]ip:port=[netns/]ip:port`, repeatable.
    #[arg(long = "map", required = true)]
    pub maps: Vec<Map>,
    #[command(flatten)]
    pub common: ackemu_base::CommonArgs,
}

/// Runs in a thread inside `ns` (or the host namespace) and returns what
/// `f` made there.
async fn in_netns<T: Send + 'static>(
    tasks: &Tasks,
    ns: Option<&str>,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = oneshot::channel();
    let name = ns.map(str::to_owned);
    tasks.spawn_thread(
        format!("forward/netns/{}", ns.unwrap_or("host")),
        move || {
            let r = match &name {
                Some(n) => ackemu_cloudsim::dataplane::netns::enter(n)
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|()| f()),
                None => f(),
            };
            let _ = tx.send(r);
        },
    );
    let r = rx
        .await
        .map_err(|_| anyhow::anyhow!("the namespace thread died"))?;
    Ok(r?)
}

async fn listen(tasks: &Tasks, ep: &Endpoint) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = ep.addr;
    let std = in_netns(tasks, ep.netns.as_deref(), move || {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .await
    .with_context(|| format!("listening on {ep}"))?;
    Ok(tokio::net::TcpListener::from_std(std)?)
}

pub async fn connect(tasks: &Tasks, ep: &Endpoint) -> anyhow::Result<tokio::net::TcpStream> {
    let v4 = ep.addr.is_ipv4();
    let sock = in_netns(tasks, ep.netns.as_deref(), move || {
        let s = socket2::Socket::new(
            if v4 {
                socket2::Domain::IPV4
            } else {
                socket2::Domain::IPV6
            },
            socket2::Type::STREAM,
            None,
        )?;
        s.set_nonblocking(true)?;
        Ok(s)
    })
    .await?;
    let sock = tokio::net::TcpSocket::from_std_stream(sock.into());
    Ok(sock.connect(ep.addr).await?)
}

/// Starts every map; returns once all listen. They run until `tasks` is
/// cancelled.
pub async fn start(tasks: &Tasks, maps: &[Map]) -> anyhow::Result<()> {
    for m in maps {
        let l = listen(tasks, &m.listen).await?;
        let t = tasks.clone();
        let token = tasks.token();
        let m = m.clone();
        let sem = Arc::new(Semaphore::new(MAX_CONNS));
        tracing::info!("forwarding {m}");
        tasks.spawn(format!("forward/{m}"), async move {
            loop {
                let accepted = tokio::select! {
                    () = token.cancelled() => return,
                    a = l.accept() => a,
                };
                let (inbound, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("forward {m}: accept: {e}");
                        continue;
                    }
                };
                let Ok(permit) = sem.clone().try_acquire_owned() else {
                    tracing::warn!(
                        "forward {m}: {MAX_CONNS} connections in flight, refusing {peer}"
                    );
                    continue;
                };
                let t2 = t.clone();
                let m2 = m.clone();
                let token = token.clone();
                t.spawn(format!("forward/{m}/{peer}"), async move {
                    let _permit = permit;
                    let mut inbound = inbound;
                    let mut out = match connect(&t2, &m2.connect).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!("forward {m2}: connecting for {peer}: {e:#}");
                            return;
                        }
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = out.set_nodelay(true);
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                    }
                });
            }
        });
    }
    Ok(())
}

/// `ackemu forward`: the daemon.
pub async fn run(args: ForwardArgs) -> anyhow::Result<()> {
    let env = ackemu_base::Env::init("forward", &args.common).await?;
    start(&env.tasks, &args.maps).await?;
    env.health.set_ready(true);
    env.tasks.token().cancelled().await;
    env.tasks.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_and_refuses_non_loopback_host_addresses() {
        let m: Map = "127.0.0.1:6443=ackemu-i-1/192.168.0.10:6443"
            .parse()
            .unwrap();
        assert_eq!(m.listen.netns, None);
        assert_eq!(m.connect.netns.as_deref(), Some("ackemu-i-1"));
        assert_eq!(m.to_string(), "127.0.0.1:6443=ackemu-i-1/192.168.0.10:6443");
        let r: Map = "ns/127.0.0.1:2379=127.0.0.1:2379".parse().unwrap();
        assert_eq!(r.listen.netns.as_deref(), Some("ns"));
        let e = "192.168.0.10:80=127.0.0.1:80".parse::<Map>().unwrap_err();
        assert!(e.contains("must be loopback"), "{e}");
        assert!(
            "127.0.0.1:1"
                .parse::<Map>()
                .unwrap_err()
                .contains("LISTEN=CONNECT")
        );
        assert!(
            "/1.2.3.4:5=127.0.0.1:1"
                .parse::<Map>()
                .unwrap_err()
                .contains("empty namespace")
        );
        assert!(
            "127.0.0.1=127.0.0.1:1"
                .parse::<Map>()
                .unwrap_err()
                .contains("ip:port")
        );
    }
}
