//! The docker-compose hypervisor (`--hypervisor compose`): every ECS
//! instance runs in its own container, one of a pool declared in
//! `docker-compose.yml`. Each ECS container runs a host agent
//! (`ackemu-hostd`, [`HostAgent`]) that claims one instance at a time and
//! boots it exactly as the local backend does on one machine — a network
//! namespace whose `eth0` is the TUN of an `ackemu-vnic` — except that the
//! NIC's underlay is the compose network instead of loopback: its
//! datagrams go to the fabric in the cloud container.
//!
//! cloudsim ([`ComposeBackend`]) assigns an instance to the first free
//! container in `--compose-hosts` order (the master, created first, lands
//! on the first one, the container that publishes the API server's port),
//! remembers the assignment in `<data-dir>/compose-hosts.json` so a
//! restarted instance comes back in the same container, and talks to the
//! agents over HTTP/JSON on the compose network.
//!
//! The agent also does the container's two kinds of TCP plumbing, so
//! nothing emulated is routed anywhere: `--publish PORT` listens on the
//! container's compose address and connects, inside the instance's
//! namespace, to the instance's private address (docker publishes that
//! port on the host's 127.0.0.1 only); `--underlay LISTEN=HOST:PORT`
//! listens on a loopback address inside the instance's namespace and
//! connects from the container to a compose service (the store members
//! for the master's API server, as the local launcher's forwards do).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, oneshot};

use super::fabric::Fabric;
use super::local::{NicHost, NicKnobs, NicLaunch, wait_attached};
use super::netns::{self, DataplaneError, Result};
use super::wire;
use crate::cloud::Cloud;
use crate::hypervisor::{HypervisorBackend, HypervisorError, InstanceSpec};

/// Connections in flight per plumbing listener.
const MAX_CONNS: usize = 256;
/// How long cloudsim waits for an agent's answer (a boot waits for the
/// NIC's `ready`, at most 20 s, plus a teardown of what ran before).
const AGENT_TIMEOUT: Duration = Duration::from_secs(60);
/// An underlay connect to a compose service (same bridge: sub-millisecond
/// when it is up; a removed container answers nothing, not even ARP).
const UNDERLAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often an underlay target that stopped answering is probed.
const UNDERLAY_PROBE_INTERVAL: Duration = Duration::from_millis(250);

// ---------------------------------------------------------------- wire

/// `POST /v1/stop`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StopRequest {
    pub instance_id: String,
    /// Delete the instance's files too (a released instance).
    pub remove_files: bool,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostStatus {
    /// The instance this container hosts (running or stopped), if any.
    pub instance_id: Option<String>,
    /// Whether its NIC (and so the instance) runs.
    pub running: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AgentError {
    error: String,
}

// ---------------------------------------------------------------- agent

/// `LISTEN=HOST:PORT` of `--underlay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderlayMap {
    /// Loopback address inside the instance's namespace.
    pub listen: SocketAddrV4,
    /// A compose service (`store-0:2379`), resolved on each connection.
    pub target: String,
}

impl std::str::FromStr for UnderlayMap {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (l, t) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected LISTEN=HOST:PORT"))?;
        let listen: SocketAddrV4 = l
            .parse()
            .map_err(|e| format!("{s:?}: expected a loopback ip:port before '=': {e}"))?;
        if !listen.ip().is_loopback() {
            return Err(format!(
                "{s:?}: the instance side must be a loopback address (nothing emulated is routed)"
            ));
        }
        match t.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {}
            _ => return Err(format!("{s:?}: expected HOST:PORT after '='")),
        }
        Ok(UnderlayMap {
            listen,
            target: t.to_owned(),
        })
    }
}

/// Flags of `ackemu-hostd`.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "ackemu-hostd",
    about = "An ECS container's host agent: boots the instance cloudsim assigns to it (docker-compose)"
)]
pub struct HostConfig {
    /// The agent's HTTP API (cloudsim calls it on the compose network).
    #[arg(long, default_value = "0.0.0.0:7070")]
    pub listen: SocketAddr,
    /// Per-instance files (UserData, its output, the NIC's log).
    #[arg(long, default_value = "/var/lib/ackemu-host")]
    pub run_dir: PathBuf,
    /// The NIC binary (default: `ackemu-vnic` next to this one).
    #[arg(long)]
    pub vnic_binary: Option<PathBuf>,
    /// Publish the instance's TCP PORT on this container's address (the
    /// compose file maps it to the host's 127.0.0.1). Repeatable.
    #[arg(long = "publish")]
    pub publish: Vec<u16>,
    /// `LISTEN=HOST:PORT`: a loopback listener inside the instance's
    /// namespace connected to a compose service. Repeatable.
    #[arg(long = "underlay")]
    pub underlay: Vec<UnderlayMap>,
    #[command(flatten)]
    pub common: ackemu_base::CommonArgs,
}

struct Hosted {
    launch: NicLaunch,
    /// Cancels this instance's underlay listeners.
    plumbing: Tasks,
}

struct AgentInner {
    host: NicHost,
    tasks: Tasks,
    underlay: Vec<UnderlayMap>,
    /// The instance this container hosts.
    current: tokio::sync::Mutex<Option<Hosted>>,
    /// Its namespace and private address, for `--publish` (read per
    /// connection, so a sync lock).
    target: Mutex<Option<(String, Ipv4Addr)>>,
}

/// See the module documentation.
#[derive(Clone)]
pub struct HostAgent {
    inner: Arc<AgentInner>,
}

fn agent_err(e: impl ToString) -> (StatusCode, Json<AgentError>) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(AgentError {
            error: e.to_string(),
        }),
    )
}

type AgentResult<T> = std::result::Result<Json<T>, (StatusCode, Json<AgentError>)>;

impl HostAgent {
    pub fn new(cfg: &HostConfig, tasks: Tasks) -> anyhow::Result<HostAgent> {
        let vnic = match &cfg.vnic_binary {
            Some(p) => p.clone(),
            None => std::env::current_exe()?.with_file_name("ackemu-vnic"),
        };
        if !vnic.exists() {
            anyhow::bail!(
                "the nic binary {} does not exist (--vnic-binary)",
                vnic.display()
            );
        }
        super::preflight().map_err(|m| anyhow::anyhow!("{m}"))?;
        Ok(HostAgent {
            inner: Arc::new(AgentInner {
                host: NicHost::new(cfg.run_dir.clone(), vnic, tasks.clone()),
                tasks,
                underlay: cfg.underlay.clone(),
                current: tokio::sync::Mutex::new(None),
                target: Mutex::new(None),
            }),
        })
    }

    fn grace(l: &NicLaunch) -> Duration {
        Duration::from_millis(l.stop_grace_ms)
    }

    async fn boot(&self, l: NicLaunch) -> Result<()> {
        let mut cur = self.inner.current.lock().await;
        if let Some(h) = cur.as_ref()
            && h.launch.instance_id != l.instance_id
            && self.inner.host.nic_pid(&h.launch.instance_id).is_some()
        {
            return Err(DataplaneError::new(
                format!("booting {}", l.instance_id),
                format!("this container runs instance {}", h.launch.instance_id),
            ));
        }
        if let Some(h) = cur.take() {
            h.plumbing.token().cancel();
            *self.inner.target.lock() = None;
            self.inner
                .host
                .teardown(
                    &h.launch.instance_id,
                    &h.launch.netns,
                    Self::grace(&h.launch),
                    false,
                )
                .await?;
        }
        let host = &self.inner.host;
        host.prepare(&l, Self::grace(&l)).await?;
        // The underlay listeners exist before the UserData starts (the
        // master's API server dials the store at once).
        netns::ip(&["-n", &l.netns, "link", "set", "lo", "up"]).await?;
        let plumbing = self.inner.tasks.child();
        for m in &self.inner.underlay {
            start_underlay(&plumbing, &l.netns, m).await?;
        }
        let ip: Ipv4Addr = l
            .address
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                DataplaneError::new(
                    format!("booting {}", l.instance_id),
                    format!("invalid address {:?}", l.address),
                )
            })?;
        if let Err(e) = host.start(&l, Self::grace(&l)).await {
            plumbing.token().cancel();
            return Err(e);
        }
        *self.inner.target.lock() = Some((l.netns.clone(), ip));
        tracing::info!("booted instance {} at {}", l.instance_id, l.address);
        *cur = Some(Hosted {
            launch: l,
            plumbing,
        });
        Ok(())
    }

    async fn stop(&self, r: StopRequest) -> Result<()> {
        let mut cur = self.inner.current.lock().await;
        match cur.as_ref() {
            Some(h) if h.launch.instance_id == r.instance_id => {}
            // Not ours (or already gone): nothing runs here for it.
            _ => return Ok(()),
        }
        let Some(h) = cur.take() else { return Ok(()) };
        h.plumbing.token().cancel();
        *self.inner.target.lock() = None;
        self.inner
            .host
            .teardown(
                &h.launch.instance_id,
                &h.launch.netns,
                Self::grace(&h.launch),
                r.remove_files,
            )
            .await?;
        tracing::info!(
            "{} instance {}",
            if r.remove_files { "deleted" } else { "stopped" },
            r.instance_id
        );
        if !r.remove_files {
            // A stopped instance keeps its container.
            *cur = Some(h);
        }
        Ok(())
    }

    async fn status(&self) -> HostStatus {
        let cur = self.inner.current.lock().await;
        match cur.as_ref() {
            Some(h) => HostStatus {
                instance_id: Some(h.launch.instance_id.clone()),
                running: self.inner.host.nic_pid(&h.launch.instance_id).is_some(),
            },
            None => HostStatus::default(),
        }
    }

    /// The agent's API.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/v1/boot",
                post(
                    |State(a): State<HostAgent>, Json(l): Json<NicLaunch>| async move {
                        a.boot(l).await.map(|()| Json(HostStatus::default())).map_err(agent_err)
                    },
                ),
            )
            .route(
                "/v1/stop",
                post(
                    |State(a): State<HostAgent>, Json(r): Json<StopRequest>| async move {
                        a.stop(r).await.map(|()| Json(HostStatus::default())).map_err(agent_err)
                    },
                ),
            )
            .route(
                "/v1/status",
                get(|State(a): State<HostAgent>| async move {
                    AgentResult::Ok(Json(a.status().await))
                }),
            )
            .with_state(self.clone())
    }

    /// `--publish PORT`: the container's `0.0.0.0:PORT` to the hosted
    /// instance's private address, connected inside its namespace.
    pub async fn publish(&self, port: u16) -> anyhow::Result<()> {
        let l = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
            .await
            .map_err(|e| anyhow::anyhow!("binding 0.0.0.0:{port}: {e}"))?;
        let me = self.clone();
        let tasks = self.inner.tasks.clone();
        let token = tasks.token();
        let sem = Arc::new(Semaphore::new(MAX_CONNS));
        tasks.clone().spawn(format!("publish/{port}"), async move {
            loop {
                let (mut client, _) = tokio::select! {
                    () = token.cancelled() => return,
                    a = l.accept() => match a {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("publish {port}: accepting: {e}");
                            continue;
                        }
                    },
                };
                let Ok(permit) = sem.clone().try_acquire_owned() else {
                    continue;
                };
                let target = me.inner.target.lock().clone();
                let Some((ns, ip)) = target else {
                    tracing::info!("publish {port}: no instance runs here yet");
                    continue;
                };
                let (t2, tok) = (tasks.clone(), token.clone());
                tasks.spawn(format!("publish/{port}/conn"), async move {
                    let _permit = permit;
                    let target = SocketAddrV4::new(ip, port);
                    let sock = match socket_in(&t2, &ns).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::info!("publish {port}: {e}");
                            return;
                        }
                    };
                    let mut upstream = match sock.connect(target.into()).await {
                        Ok(u) => u,
                        Err(e) => {
                            tracing::info!("publish {port}: connecting to {target} in {ns}: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        () = tok.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    }
                });
            }
        });
        Ok(())
    }

    /// Serves the API on `listen` until the tasks are cancelled.
    pub async fn serve(&self, listen: SocketAddr) -> anyhow::Result<SocketAddr> {
        let l = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?;
        let bound = l.local_addr()?;
        let router = self.router();
        let token = self.inner.tasks.token();
        self.inner.tasks.spawn("hostd/api", async move {
            if let Err(e) = axum::serve(l, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
            {
                tracing::error!("host agent api failed: {e}");
            }
        });
        Ok(bound)
    }

    /// Powers off the hosted instance (the container is stopping).
    pub async fn shutdown(&self) {
        let id = self
            .inner
            .current
            .lock()
            .await
            .as_ref()
            .map(|h| h.launch.instance_id.clone());
        if let Some(id) = id
            && let Err(e) = self
                .stop(StopRequest {
                    instance_id: id.clone(),
                    remove_files: false,
                })
                .await
        {
            tracing::warn!("stopping instance {id}: {e}");
        }
    }
}

/// Opens a TCP socket inside namespace `ns` (a short-lived thread, so
/// nothing pins the namespace).
async fn socket_in(tasks: &Tasks, ns: &str) -> Result<tokio::net::TcpSocket> {
    let (tx, rx) = oneshot::channel();
    let name = ns.to_owned();
    tasks.spawn_thread(format!("hostd/socket/{ns}"), move || {
        let r = netns::enter(&name).and_then(|()| {
            tokio::net::TcpSocket::new_v4()
                .map_err(|e| DataplaneError::new(format!("opening a socket in {name}"), e))
        });
        let _ = tx.send(r);
    });
    rx.await
        .map_err(|_| DataplaneError::new(format!("opening a socket in {ns}"), "the thread died"))?
}

/// Connects to an underlay target within [`UNDERLAY_CONNECT_TIMEOUT`].
async fn connect_underlay(real: &Clock, target: &str) -> std::io::Result<tokio::net::TcpStream> {
    match real
        .timeout(
            UNDERLAY_CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(target),
        )
        .await
    {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {UNDERLAY_CONNECT_TIMEOUT:?}"),
        )),
    }
}

/// Whether an underlay target is down: it refused or did not answer a
/// connect, or ended a connection the instance had not ended (its process
/// died: every connection it had gets that end at once). While down, a
/// probe connects every [`UNDERLAY_PROBE_INTERVAL`] until it answers.
struct Liveness {
    down: std::sync::atomic::AtomicBool,
    what: String,
    target: String,
    tasks: Tasks,
}

impl Liveness {
    fn is_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::Acquire)
    }

    fn mark_down(self: &Arc<Self>, why: &str) {
        if self.down.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        tracing::info!("{}: {why}; closing connections until it answers", self.what);
        let me = self.clone();
        let token = self.tasks.token();
        self.tasks
            .spawn(format!("{}/probe", self.what), async move {
                let real = Clock::real();
                loop {
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = real.sleep(UNDERLAY_PROBE_INTERVAL) => {}
                    }
                    if connect_underlay(&real, &me.target).await.is_ok() {
                        me.down.store(false, std::sync::atomic::Ordering::Release);
                        tracing::info!("{}: the target answers again", me.what);
                        return;
                    }
                }
            });
    }
}

/// Copies `from` to `to` until either fails; whether the reading side
/// ended it (EOF or a read error) rather than the writing one.
async fn pump(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return true;
            }
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return false;
        }
    }
}

/// Copies both ways until both ends are done; whether the upstream ended
/// the connection (its side reached EOF or failed while the client's was
/// still open).
async fn splice(client: &mut tokio::net::TcpStream, upstream: &mut tokio::net::TcpStream) -> bool {
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let from_upstream = pump(&mut ur, &mut cw);
    let to_upstream = pump(&mut cr, &mut uw);
    tokio::pin!(from_upstream, to_upstream);
    tokio::select! {
        upstream_ended = &mut from_upstream => {
            to_upstream.await;
            upstream_ended
        }
        _ = &mut to_upstream => {
            from_upstream.await;
            false
        }
    }
}

/// Listens on `m.listen` inside `ns`; each connection goes to `m.target`
/// from the container's namespace. While the target is down ([`Liveness`]:
/// its container was killed or stopped), connections are closed at once —
/// as a connect refused upstream closes them through `ackemu forward` on
/// one machine — instead of each waiting out a connect to an address
/// nobody holds.
async fn start_underlay(tasks: &Tasks, ns: &str, m: &UnderlayMap) -> Result<()> {
    let (tx, rx) = oneshot::channel();
    let (name, addr) = (ns.to_owned(), m.listen);
    tasks.spawn_thread(format!("hostd/listen/{ns}"), move || {
        let r = netns::enter(&name).and_then(|()| {
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| DataplaneError::new(format!("binding {addr} in {name}"), e))?;
            l.set_nonblocking(true)
                .map_err(|e| DataplaneError::new("listener", e))?;
            Ok(l)
        });
        let _ = tx.send(r);
    });
    let std_l = rx
        .await
        .map_err(|_| DataplaneError::new(format!("listening in {ns}"), "the thread died"))??;
    let l = tokio::net::TcpListener::from_std(std_l)
        .map_err(|e| DataplaneError::new("registering a listener", e))?;
    let token = tasks.token();
    let t = tasks.clone();
    let sem = Arc::new(Semaphore::new(MAX_CONNS));
    let what = format!("underlay/{ns}/{addr}->{}", m.target);
    let live = Arc::new(Liveness {
        down: std::sync::atomic::AtomicBool::new(false),
        what: what.clone(),
        target: m.target.clone(),
        tasks: tasks.clone(),
    });
    tasks.spawn(what.clone(), async move {
        loop {
            let (mut client, _) = tokio::select! {
                () = token.cancelled() => return,
                a = l.accept() => match a {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("{what}: accepting: {e}");
                        continue;
                    }
                },
            };
            if live.is_down() {
                continue;
            }
            let Ok(permit) = sem.clone().try_acquire_owned() else {
                continue;
            };
            let (tok, live) = (token.clone(), live.clone());
            t.spawn(format!("{what}/conn"), async move {
                let _permit = permit;
                let mut upstream = match connect_underlay(&Clock::real(), &live.target).await {
                    Ok(u) => u,
                    Err(e) => {
                        live.mark_down(&format!("connecting: {e}"));
                        return;
                    }
                };
                tokio::select! {
                    () = tok.cancelled() => {}
                    first = splice(&mut client, &mut upstream) => if first {
                        live.mark_down("the target ended a connection");
                    },
                }
            });
        }
    });
    Ok(())
}

// -------------------------------------------------------------- backend

/// What the compose backend needs besides the fabric and the cloud.
#[derive(Debug, Clone)]
pub struct ComposeConfig {
    /// The ECS containers' agents (`ecs-0:7070`), in assignment order.
    pub hosts: Vec<String>,
    /// The fabric as the ECS containers reach it (the cloud container's
    /// compose address).
    pub fabric_advertise: SocketAddrV4,
    /// Instances' namespaces inside their containers are
    /// `<prefix><instance-id>`.
    pub netns_prefix: String,
    /// `<data-dir>/compose-hosts.json`: instance → container.
    pub assignments_file: PathBuf,
    pub mtu: usize,
    pub stop_grace: Duration,
    pub socket_buffer_bytes: usize,
    pub spin_polls: usize,
    pub v: u8,
}

struct BackendInner {
    cfg: ComposeConfig,
    fabric: Fabric,
    cloud: Cloud,
    /// instance id → host; persisted.
    assigned: Mutex<BTreeMap<String, String>>,
    /// Serialises assignment decisions.
    assigning: tokio::sync::Mutex<()>,
    real: Clock,
}

/// See the module documentation.
#[derive(Clone)]
pub struct ComposeBackend {
    inner: Arc<BackendInner>,
}

fn herr(op: &'static str, id: &str, e: impl ToString) -> HypervisorError {
    HypervisorError {
        op,
        instance_id: id.to_owned(),
        message: e.to_string(),
    }
}

/// One HTTP/1.1 request to an agent; the JSON answer or its error text.
async fn call<T: serde::de::DeserializeOwned>(
    real: &Clock,
    host: &str,
    method: http::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> std::result::Result<T, String> {
    use http_body_util::BodyExt as _;
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(host)
            .await
            .map_err(|e| format!("connecting to the host agent {host}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("host agent {host}: {e}"))?;
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default();
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(bytes)))
            .map_err(|e| format!("building a request: {e}"))?;
        let exchange = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("host agent {host}{path}: {e}"))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("host agent {host}{path}: reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        // The connection is driven beside the exchange (no extra task).
        tokio::pin!(conn);
        let (status, body) = tokio::select! {
            biased;
            r = exchange => r?,
            r = &mut conn => {
                return Err(format!("host agent {host}{path}: connection ended early: {r:?}"));
            }
        };
        if status.is_success() {
            serde_json::from_slice(&body)
                .map_err(|e| format!("host agent {host}{path}: decoding the answer: {e}"))
        } else {
            let msg = serde_json::from_slice::<AgentError>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            Err(format!("host agent {host}: {msg}"))
        }
    };
    real.timeout(AGENT_TIMEOUT, attempt)
        .await
        .map_err(|_| format!("host agent {host}{path}: no answer within {AGENT_TIMEOUT:?}"))?
}

impl ComposeBackend {
    pub fn new(cfg: ComposeConfig, fabric: Fabric, cloud: Cloud) -> anyhow::Result<ComposeBackend> {
        if cfg.hosts.is_empty() {
            anyhow::bail!(
                "--hypervisor compose needs --compose-hosts (the ECS containers' agents)"
            );
        }
        let assigned = match std::fs::read_to_string(&cfg.assignments_file) {
            Ok(t) => serde_json::from_str(&t)
                .map_err(|e| anyhow::anyhow!("parsing {}: {e}", cfg.assignments_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => anyhow::bail!("reading {}: {e}", cfg.assignments_file.display()),
        };
        Ok(ComposeBackend {
            inner: Arc::new(BackendInner {
                cfg,
                fabric,
                cloud,
                assigned: Mutex::new(assigned),
                assigning: tokio::sync::Mutex::new(()),
                real: Clock::real(),
            }),
        })
    }

    fn save(&self) -> std::result::Result<(), String> {
        let text = serde_json::to_string_pretty(&*self.inner.assigned.lock())
            .map_err(|e| e.to_string())?;
        let p = &self.inner.cfg.assignments_file;
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, p))
            .map_err(|e| format!("writing {}: {e}", p.display()))
    }

    /// The container of instance `id`, choosing the first free one.
    async fn host_for(&self, id: &str) -> std::result::Result<String, String> {
        let _g = self.inner.assigning.lock().await;
        if let Some(h) = self.inner.assigned.lock().get(id) {
            return Ok(h.clone());
        }
        let taken: Vec<String> = self.inner.assigned.lock().values().cloned().collect();
        let free = self
            .inner
            .cfg
            .hosts
            .iter()
            .find(|h| !taken.contains(h))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no free ECS container: all {} in --compose-hosts host an instance",
                    self.inner.cfg.hosts.len()
                )
            })?;
        self.inner
            .assigned
            .lock()
            .insert(id.to_owned(), free.clone());
        self.save()?;
        Ok(free)
    }

    fn assigned(&self, id: &str) -> Option<String> {
        self.inner.assigned.lock().get(id).cloned()
    }

    fn launch(&self, spec: &InstanceSpec) -> NicLaunch {
        let cfg = &self.inner.cfg;
        let id = &spec.instance_id;
        let grace = self.inner.cloud.clock().to_real(cfg.stop_grace);
        NicLaunch::for_spec(
            spec,
            format!("{}{id}", cfg.netns_prefix),
            cfg.fabric_advertise,
            wire::token(&self.inner.cloud.snapshot().signing_key, id),
            &NicKnobs {
                mtu: cfg.mtu,
                stop_grace_ms: grace.as_millis() as u64,
                socket_buffer_bytes: cfg.socket_buffer_bytes,
                spin_polls: cfg.spin_polls,
                v: cfg.v,
            },
        )
    }

    async fn boot_inner(&self, spec: &InstanceSpec) -> std::result::Result<(), String> {
        let id = &spec.instance_id;
        let host = self.host_for(id).await?;
        let fabric = &self.inner.fabric;
        fabric.detach(id);
        fabric.expect(id);
        let launch = serde_json::to_value(self.launch(spec)).map_err(|e| e.to_string())?;
        call::<HostStatus>(
            &self.inner.real,
            &host,
            http::Method::POST,
            "/v1/boot",
            Some(launch),
        )
        .await?;
        wait_attached(fabric, &self.inner.real, id, Duration::from_secs(10))
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!("instance {id} runs in container {host}");
        Ok(())
    }

    async fn stop_inner(&self, id: &str, remove: bool) -> std::result::Result<(), String> {
        self.inner.fabric.detach(id);
        let Some(host) = self.assigned(id) else {
            return Ok(());
        };
        let body = serde_json::to_value(StopRequest {
            instance_id: id.to_owned(),
            remove_files: remove,
        })
        .map_err(|e| e.to_string())?;
        call::<HostStatus>(
            &self.inner.real,
            &host,
            http::Method::POST,
            "/v1/stop",
            Some(body),
        )
        .await?;
        if remove {
            self.inner.assigned.lock().remove(id);
            self.save()?;
        }
        Ok(())
    }

    async fn resume_inner(&self, spec: &InstanceSpec) -> std::result::Result<(), String> {
        let id = &spec.instance_id;
        if let Some(host) = self.assigned(id) {
            let st: std::result::Result<HostStatus, String> = call(
                &self.inner.real,
                &host,
                http::Method::GET,
                "/v1/status",
                None,
            )
            .await;
            if let Ok(st) = st
                && st.running
                && st.instance_id.as_deref() == Some(id.as_str())
            {
                self.inner.fabric.expect(id);
                if wait_attached(
                    &self.inner.fabric,
                    &self.inner.real,
                    id,
                    Duration::from_secs(5),
                )
                .await
                .is_ok()
                {
                    tracing::info!("instance {id}: adopted its running nic in {host}");
                    return Ok(());
                }
            }
        }
        self.boot_inner(spec).await
    }

    /// Powers off every assigned instance (cloudsim exits with
    /// `--on-exit stop`).
    pub async fn power_off_all(&self) {
        let ids: Vec<String> = self.inner.assigned.lock().keys().cloned().collect();
        let jobs = ids.iter().map(|id| async move {
            if let Err(e) = self.stop_inner(id, false).await {
                tracing::warn!("powering off {id}: {e}");
            }
        });
        futures::future::join_all(jobs).await;
    }
}

impl HypervisorBackend for ComposeBackend {
    fn boot(
        &self,
        spec: InstanceSpec,
    ) -> BoxFuture<'static, std::result::Result<(), HypervisorError>> {
        let me = self.clone();
        Box::pin(async move {
            let id = spec.instance_id.clone();
            me.boot_inner(&spec).await.map_err(|e| herr("boot", &id, e))
        })
    }

    fn stop(
        &self,
        instance_id: String,
    ) -> BoxFuture<'static, std::result::Result<(), HypervisorError>> {
        let me = self.clone();
        Box::pin(async move {
            me.stop_inner(&instance_id, false)
                .await
                .map_err(|e| herr("stop", &instance_id, e))
        })
    }

    fn delete(
        &self,
        instance_id: String,
    ) -> BoxFuture<'static, std::result::Result<(), HypervisorError>> {
        let me = self.clone();
        Box::pin(async move {
            me.stop_inner(&instance_id, true)
                .await
                .map_err(|e| herr("delete", &instance_id, e))
        })
    }

    fn resume(
        &self,
        spec: InstanceSpec,
    ) -> BoxFuture<'static, std::result::Result<(), HypervisorError>> {
        let me = self.clone();
        Box::pin(async move {
            let id = spec.instance_id.clone();
            me.resume_inner(&spec)
                .await
                .map_err(|e| herr("resume", &id, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underlay_maps_parse_and_refuse_routed_addresses() {
        let m: UnderlayMap = "127.0.0.1:2379=store-0:2379".parse().unwrap();
        assert_eq!(m.listen, "127.0.0.1:2379".parse().unwrap());
        assert_eq!(m.target, "store-0:2379");
        assert!(
            "192.168.0.10:2379=store-0:2379"
                .parse::<UnderlayMap>()
                .is_err()
        );
        assert!("127.0.0.1:2379".parse::<UnderlayMap>().is_err());
        assert!("127.0.0.1:2379=store-0".parse::<UnderlayMap>().is_err());
        assert!("127.0.0.1:2379=:2379".parse::<UnderlayMap>().is_err());
    }

    /// A connected loopback pair: (the proxy's end, the far end).
    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let far = tokio::net::TcpStream::connect(l.local_addr().unwrap());
        let (near, far) = tokio::join!(l.accept(), far);
        (near.unwrap().0, far.unwrap())
    }

    #[tokio::test]
    async fn splice_tells_whether_the_upstream_ended_the_connection() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        // The upstream's process dies: its end closes first.
        let (mut client, mut client_far) = pair().await;
        let (mut upstream, upstream_far) = pair().await;
        let other_side = async move {
            drop(upstream_far);
            // The client sees the end and closes too, as hyper does.
            let mut buf = [0u8; 8];
            assert_eq!(client_far.read(&mut buf).await.unwrap(), 0);
        };
        let (ended, ()) = tokio::join!(splice(&mut client, &mut upstream), other_side);
        assert!(ended, "the upstream closed first");

        // The client goes away: not the upstream's doing, data still flows
        // until then.
        let (mut client, mut client_far) = pair().await;
        let (mut upstream, mut upstream_far) = pair().await;
        let other_side = async move {
            client_far.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            upstream_far.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            drop(client_far);
            assert_eq!(upstream_far.read(&mut buf).await.unwrap(), 0);
        };
        let (ended, ()) = tokio::join!(splice(&mut client, &mut upstream), other_side);
        assert!(!ended, "the client closed first");
    }
}
