//! `ackemu-node runtime`: the CRI-shaped container runtime (dockershim +
//! containerd in one process, as the articles' nodes had them).
//!
//! - Sandboxes: a network namespace wired by the CNI plugin. Calls to the
//!   plugin go through the *network plugin manager*: a lock per pod, held
//!   across the plugin call; `PodSandboxStatus` takes the same lock, so a
//!   stuck CNI call stalls the kubelet's PLEG relist (S02).
//! - Containers: each has a lock held across every `runc` process it spawns
//!   (run, kill, delete, exec); `ContainerStatus` takes it too, so a runc
//!   blocked on the bus stalls PLEG (S01).
//! - The runtime is a child subreaper: container processes that runc leaves
//!   behind are reparented to it, reaped on SIGCHLD, their exit recorded.
//!   Their output arrives on FIFOs and is written in the CRI log format.
//! - SIGUSR1 writes the task dump to `<root>/runtime-stacks-<time>.log`
//!   (docker's goroutine-stacks file); it is also at `/debug/tasks` on the
//!   socket and the admin port.

pub mod cni;
pub mod exec;
pub mod images;
pub mod logs;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::{Tasks, wait_on};
use ackemu_base::{CommonArgs, Env};
use ackemu_proto::ackemu::node::v1 as pb;
use anyhow::Context as _;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use parking_lot::Mutex as SyncMutex;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::paths::NodePaths;

/// `ackemu-node runtime` flags.
#[derive(clap::Args, Debug)]
pub struct RuntimeArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    paths: NodePaths,
    /// The CRI socket (default `<run-dir>/runtime.sock`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// State: bundles, FIFOs, default log files.
    #[arg(long, default_value = "/var/lib/ackemu/runtime")]
    root: PathBuf,
    /// The binary run as `<binary> runc …` (default: this executable).
    #[arg(long)]
    runc_binary: Option<PathBuf>,
    /// runc's state root (default `<root>/runc`).
    #[arg(long)]
    runc_root: Option<PathBuf>,
    /// Let runc manage cgroups through systemd (its `UseSystemd` probe).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    systemd_cgroup: bool,
    /// CNI configuration directory.
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// CNI plugin directory.
    #[arg(long, default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// Where pod network namespaces are created.
    #[arg(long, default_value = "/run/netns")]
    netns_dir: PathBuf,
    /// Name prefix of pod network namespaces.
    #[arg(long, default_value = "cni-")]
    netns_prefix: String,
    /// The program images run (`<binary> <image name>`), when a container
    /// has no command.
    #[arg(long)]
    workload_binary: Option<PathBuf>,
}

/// What [`run`] needs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// CRI socket.
    pub socket: PathBuf,
    /// State root.
    pub root: PathBuf,
    /// runc binary.
    pub runc_binary: PathBuf,
    /// runc root.
    pub runc_root: PathBuf,
    /// Node run dir (passed to runc for the bus socket).
    pub run_dir: PathBuf,
    /// systemd cgroups.
    pub systemd_cgroup: bool,
    /// CNI conf dir.
    pub cni_conf_dir: PathBuf,
    /// CNI bin dir.
    pub cni_bin_dir: PathBuf,
    /// Netns dir.
    pub netns_dir: PathBuf,
    /// Netns name prefix.
    pub netns_prefix: String,
    /// Workload program.
    pub workload_binary: Option<PathBuf>,
}

/// Process entry for the `runtime` role.
pub fn main(args: RuntimeArgs) -> anyhow::Result<()> {
    crate::daemon_runtime()?.block_on(async {
        let env = Env::init("runtime", &args.common).await?;
        let root = args.root.clone();
        let config = RuntimeConfig {
            socket: args
                .socket
                .clone()
                .unwrap_or_else(|| args.paths.runtime_socket()),
            runc_binary: match &args.runc_binary {
                Some(b) => b.clone(),
                None => std::env::current_exe().context("locating this executable for runc")?,
            },
            runc_root: args.runc_root.clone().unwrap_or_else(|| root.join("runc")),
            root,
            run_dir: args.paths.run_dir.clone(),
            systemd_cgroup: args.systemd_cgroup,
            cni_conf_dir: args.cni_conf_dir.clone(),
            cni_bin_dir: args.cni_bin_dir.clone(),
            netns_dir: args.netns_dir.clone(),
            netns_prefix: args.netns_prefix.clone(),
            workload_binary: args.workload_binary.clone(),
        };
        run(config, env).await
    })
}

/// Serve until told to stop.
pub async fn run(config: RuntimeConfig, env: Env) -> anyhow::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
    std::fs::create_dir_all(config.root.join("containers"))
        .with_context(|| format!("creating {}", config.root.display()))?;
    let rt = Runtime::new(config.clone(), &env);
    rt.start_reaper();
    rt.start_dump_on_sigusr1()?;
    let listener = crate::uds::bind(&config.socket)
        .with_context(|| format!("binding {}", config.socket.display()))?;
    let router = tonic::service::Routes::new(crate::grpc::runtime::server(rt.clone()))
        .add_service(crate::grpc::image::server(rt))
        .into_axum_router()
        .merge(crate::uds::debug_routes());
    tracing::info!("runtime: serving CRI on {}", config.socket.display());
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

/// Runtime failures, mapped to gRPC codes in [`crate::grpc::status`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No such sandbox or container.
    #[error("{0}")]
    NotFound(String),
    /// Bad request.
    #[error("{0}")]
    InvalidArgument(String),
    /// Wrong state for the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A runc process failed.
    #[error("runc {op} {id}: {message}")]
    Runc {
        /// Operation.
        op: String,
        /// Container.
        id: String,
        /// runc's stderr.
        message: String,
    },
    /// The CNI plugin failed.
    #[error("{0}")]
    Network(String),
    /// A deadline passed.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Local failure.
    #[error("{0}")]
    Internal(String),
}

struct Sandbox {
    id: String,
    config: pb::PodSandboxConfig,
    netns: PathBuf,
    ip: String,
    ready: bool,
    created_at: i64,
    runtime_handler: String,
}

struct ContainerData {
    sandbox_id: String,
    config: pb::ContainerConfig,
    state: pb::ContainerState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    pid: u32,
    log_path: PathBuf,
    dir: PathBuf,
    reason: String,
    message: String,
}

/// A container's lock held by one operation; clears the holder's name on
/// every exit path, so waiters never name an operation that has finished.
struct HeldLock<'a> {
    _guard: tokio::sync::MutexGuard<'a, ()>,
    holder: &'a SyncMutex<String>,
}

impl Drop for HeldLock<'_> {
    fn drop(&mut self) {
        self.holder.lock().clear();
    }
}

struct Container {
    id: String,
    /// Held across every runc process for this container.
    lock: Mutex<()>,
    /// What holds `lock` (for the dump and waiters' descriptions).
    holder: SyncMutex<String>,
    data: SyncMutex<ContainerData>,
    exited: CancellationToken,
}

/// The runtime's state and operations.
#[derive(Clone)]
pub struct Runtime {
    cfg: Arc<RuntimeConfig>,
    clock: Clock,
    tasks: Tasks,
    sandboxes: Arc<SyncMutex<BTreeMap<String, Sandbox>>>,
    containers: Arc<SyncMutex<BTreeMap<String, Arc<Container>>>>,
    /// The network plugin manager's per-pod locks.
    pod_locks: Arc<SyncMutex<HashMap<String, Arc<Mutex<()>>>>>,
    /// Pulled images by normalized reference.
    images: Arc<SyncMutex<BTreeMap<String, images::Pulled>>>,
}

fn new_id() -> String {
    use rand::Rng as _;
    let mut b = [0u8; 32];
    rand::rng().fill(&mut b);
    hex::encode(b)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

impl Runtime {
    /// A runtime over `cfg`.
    pub fn new(cfg: RuntimeConfig, env: &Env) -> Runtime {
        Runtime {
            cfg: Arc::new(cfg),
            clock: env.clock.clone(),
            tasks: env.tasks.clone(),
            sandboxes: Arc::default(),
            containers: Arc::default(),
            pod_locks: Arc::default(),
            images: Arc::default(),
        }
    }

    /// The runtime's task tracker.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    fn now_ns(&self) -> i64 {
        self.clock.wall_unix_ms().saturating_mul(1_000_000)
    }

    fn pod_lock(&self, sandbox_id: &str) -> Arc<Mutex<()>> {
        self.pod_locks
            .lock()
            .entry(sandbox_id.to_string())
            .or_default()
            .clone()
    }

    fn container(&self, id: &str) -> Result<Arc<Container>, RuntimeError> {
        self.containers
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id} not found")))
    }

    async fn cni(
        &self,
        command: &'static str,
        sb_id: &str,
        netns: &Path,
        meta: &pb::PodSandboxMetadata,
    ) -> Result<Option<String>, RuntimeError> {
        let conf = cni::load(&self.cfg.cni_conf_dir, &self.cfg.cni_bin_dir)
            .map_err(|e| RuntimeError::Network(format!("cni config uninitialized: {}", e.msg)))?;
        let args = BTreeMap::from([
            ("IgnoreUnknown".to_string(), "1".to_string()),
            ("K8S_POD_NAMESPACE".to_string(), meta.namespace.clone()),
            ("K8S_POD_NAME".to_string(), meta.name.clone()),
            ("K8S_POD_INFRA_CONTAINER_ID".to_string(), sb_id.to_string()),
            ("K8S_POD_UID".to_string(), meta.uid.clone()),
        ]);
        let netns_s = netns.display().to_string();
        let r = cni::exec(
            &conf,
            &self.cfg.cni_bin_dir,
            cni::Call {
                command,
                container_id: sb_id,
                netns: &netns_s,
                args,
            },
        )
        .await
        .map_err(|e| {
            RuntimeError::Network(format!(
                "networkPlugin cni failed to {} pod \"{}_{}\" network: {} (code {}){}",
                if command == "ADD" {
                    "set up"
                } else {
                    "tear down"
                },
                meta.name,
                meta.namespace,
                e.msg,
                e.code,
                if e.details.is_empty() {
                    String::new()
                } else {
                    format!(": {}", e.details)
                }
            ))
        })?;
        Ok(r.and_then(|res| {
            res.ips
                .first()
                .map(|ip| ip.address.split('/').next().unwrap_or("").to_string())
        }))
    }

    /// Run `fut` as a tracked task that finishes even when the caller goes
    /// away: a client that disconnects (a restarted kubelet) does not cancel
    /// the runtime's work, as with dockershim and containerd — a CNI call
    /// stuck under a pod's lock stays stuck, and keeps holding it (S02).
    pub async fn detached<T, F>(&self, name: String, fut: F) -> Result<T, RuntimeError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, RuntimeError>> + Send + 'static,
    {
        self.tasks
            .spawn(name, fut)
            .await
            .map_err(|e| RuntimeError::Internal(format!("runtime operation failed: {e}")))?
    }

    /// RunPodSandbox: a network namespace wired by CNI.
    pub async fn run_pod_sandbox(
        &self,
        req: pb::RunPodSandboxRequest,
    ) -> Result<String, RuntimeError> {
        let config = req.config.ok_or_else(|| {
            RuntimeError::InvalidArgument("RunPodSandbox without a config".into())
        })?;
        let meta = config.metadata.clone().unwrap_or_default();
        if meta.name.is_empty() {
            return Err(RuntimeError::InvalidArgument(
                "sandbox metadata.name is empty".into(),
            ));
        }
        let id = new_id();
        let netns = self
            .cfg
            .netns_dir
            .join(format!("{}{}", self.cfg.netns_prefix, short(&id)));
        let lock = self.pod_lock(&id);
        let ip = {
            let _g = wait_on(
                format!(
                    "network plugin manager: pod {}/{} lock (SetUpPod)",
                    meta.namespace, meta.name
                ),
                lock.lock(),
            )
            .await;
            match self.cni("ADD", &id, &netns, &meta).await {
                Ok(ip) => ip.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(
                        "runtime: failed to set up sandbox network for pod {}/{}: {e}",
                        meta.namespace,
                        meta.name
                    );
                    let _ = self.cni("DEL", &id, &netns, &meta).await;
                    let _ = crate::cnid::net::delete_netns(&netns);
                    self.pod_locks.lock().remove(&id);
                    return Err(e);
                }
            }
        };
        tracing::info!(
            "runtime: sandbox {} for pod {}/{} ready, ip {ip}, netns {}",
            short(&id),
            meta.namespace,
            meta.name,
            netns.display()
        );
        self.sandboxes.lock().insert(
            id.clone(),
            Sandbox {
                id: id.clone(),
                config,
                netns,
                ip,
                ready: true,
                created_at: self.now_ns(),
                runtime_handler: req.runtime_handler,
            },
        );
        Ok(id)
    }

    fn sandbox_meta(&self, id: &str) -> Result<(pb::PodSandboxMetadata, PathBuf), RuntimeError> {
        let s = self.sandboxes.lock();
        let sb = s
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("pod sandbox {id} not found")))?;
        Ok((
            sb.config.metadata.clone().unwrap_or_default(),
            sb.netns.clone(),
        ))
    }

    /// StopPodSandbox: stop its containers, tear its network down.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let (meta, netns) = self.sandbox_meta(id)?;
        let ids: Vec<String> = self
            .containers
            .lock()
            .values()
            .filter(|c| c.data.lock().sandbox_id == id)
            .map(|c| c.id.clone())
            .collect();
        for c in ids {
            self.stop_container(&c, 10).await?;
        }
        let lock = self.pod_lock(id);
        let _g = wait_on(
            format!(
                "network plugin manager: pod {}/{} lock (TearDownPod)",
                meta.namespace, meta.name
            ),
            lock.lock(),
        )
        .await;
        self.cni("DEL", id, &netns, &meta).await?;
        if let Some(sb) = self.sandboxes.lock().get_mut(id) {
            sb.ready = false;
        }
        Ok(())
    }

    /// RemovePodSandbox: stop it if needed, remove its containers and netns.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let ready = match self.sandboxes.lock().get(id) {
            Some(sb) => sb.ready,
            None => return Ok(()),
        };
        if ready {
            self.stop_pod_sandbox(id).await?;
        }
        let ids: Vec<String> = self
            .containers
            .lock()
            .values()
            .filter(|c| c.data.lock().sandbox_id == id)
            .map(|c| c.id.clone())
            .collect();
        for c in ids {
            self.remove_container(&c).await?;
        }
        if let Some(sb) = self.sandboxes.lock().remove(id) {
            crate::cnid::net::delete_netns(&sb.netns)
                .map_err(|e| RuntimeError::Internal(e.to_string()))?;
        }
        self.pod_locks.lock().remove(id);
        Ok(())
    }

    /// PodSandboxStatus: takes the pod's network lock to read its IP, as
    /// dockershim's `GetPodNetworkStatus` did.
    pub async fn pod_sandbox_status(
        &self,
        id: &str,
    ) -> Result<pb::PodSandboxStatusResponse, RuntimeError> {
        let (meta, _) = self.sandbox_meta(id)?;
        let lock = self.pod_lock(id);
        let _g = wait_on(
            format!(
                "network plugin manager: pod {}/{} lock (GetPodNetworkStatus)",
                meta.namespace, meta.name
            ),
            lock.lock(),
        )
        .await;
        let s = self.sandboxes.lock();
        let sb = s
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("pod sandbox {id} not found")))?;
        Ok(pb::PodSandboxStatusResponse {
            status: Some(pb::PodSandboxStatus {
                id: sb.id.clone(),
                metadata: sb.config.metadata.clone(),
                state: if sb.ready {
                    pb::PodSandboxState::SandboxReady
                } else {
                    pb::PodSandboxState::SandboxNotready
                } as i32,
                created_at: sb.created_at,
                network: Some(pb::PodSandboxNetworkStatus {
                    ip: sb.ip.clone(),
                    additional_ips: Vec::new(),
                }),
                linux: Some(pb::LinuxPodSandboxStatus {
                    namespaces: Some(pb::NamespaceOption {
                        network_path: sb.netns.display().to_string(),
                    }),
                }),
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
                runtime_handler: sb.runtime_handler.clone(),
            }),
            info: HashMap::from([("netns".to_string(), sb.netns.display().to_string())]),
        })
    }

    /// ListPodSandbox (lock-free snapshot).
    pub fn list_pod_sandbox(&self, filter: Option<pb::PodSandboxFilter>) -> Vec<pb::PodSandbox> {
        let f = filter.unwrap_or_default();
        self.sandboxes
            .lock()
            .values()
            .filter(|sb| f.id.is_empty() || sb.id == f.id)
            .filter(|sb| {
                f.state.as_ref().is_none_or(|s| {
                    (s.state == pb::PodSandboxState::SandboxReady as i32) == sb.ready
                })
            })
            .filter(|sb| {
                f.label_selector
                    .iter()
                    .all(|(k, v)| sb.config.labels.get(k) == Some(v))
            })
            .map(|sb| pb::PodSandbox {
                id: sb.id.clone(),
                metadata: sb.config.metadata.clone(),
                state: if sb.ready {
                    pb::PodSandboxState::SandboxReady
                } else {
                    pb::PodSandboxState::SandboxNotready
                } as i32,
                created_at: sb.created_at,
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
                runtime_handler: sb.runtime_handler.clone(),
            })
            .collect()
    }

    /// CreateContainer: write the bundle and FIFOs; nothing runs yet.
    pub async fn create_container(
        &self,
        req: pb::CreateContainerRequest,
    ) -> Result<String, RuntimeError> {
        let config = req.config.ok_or_else(|| {
            RuntimeError::InvalidArgument("CreateContainer without a config".into())
        })?;
        let (log_dir, netns, cgroup_parent) = {
            let s = self.sandboxes.lock();
            let sb = s.get(&req.pod_sandbox_id).ok_or_else(|| {
                RuntimeError::NotFound(format!("pod sandbox {} not found", req.pod_sandbox_id))
            })?;
            if !sb.ready {
                return Err(RuntimeError::FailedPrecondition(format!(
                    "pod sandbox {} is not ready",
                    req.pod_sandbox_id
                )));
            }
            (
                sb.config.log_directory.clone(),
                sb.netns.clone(),
                sb.config.cgroup_parent.clone(),
            )
        };
        for m in &config.mounts {
            if !m.container_path.starts_with('/') || !m.host_path.starts_with('/') {
                return Err(RuntimeError::InvalidArgument(format!(
                    "mount {:?} -> {:?}: expected absolute host and container paths",
                    m.host_path, m.container_path
                )));
            }
        }
        let image = config.image.clone().unwrap_or_default().image;
        let mut argv: Vec<String> = config.command.clone();
        if argv.is_empty() {
            let Some(bin) = &self.cfg.workload_binary else {
                return Err(RuntimeError::InvalidArgument(format!(
                    "container {} has no command and no --workload-binary maps image {image:?} to a program",
                    config.metadata.clone().unwrap_or_default().name
                )));
            };
            argv = match self.find_image(&image) {
                // A pulled image runs its entrypoint's program.
                Some(p) => std::iter::once(bin.display().to_string())
                    .chain(std::iter::once(p.program))
                    .chain(p.args)
                    .collect(),
                None => vec![bin.display().to_string(), image_program(&image)],
            };
        }
        argv.extend(config.args.iter().cloned());
        let id = new_id();
        let dir = self.cfg.root.join("containers").join(&id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::Internal(format!("creating {}: {e}", dir.display())))?;
        let name = config.metadata.clone().unwrap_or_default().name;
        let log_path = if !log_dir.is_empty() && !config.log_path.is_empty() {
            PathBuf::from(&log_dir).join(&config.log_path)
        } else {
            dir.join(format!("{name}.log"))
        };
        if let Some(p) = log_path.parent() {
            std::fs::create_dir_all(p)
                .map_err(|e| RuntimeError::Internal(format!("creating {}: {e}", p.display())))?;
        }
        for f in ["stdout.fifo", "stderr.fifo"] {
            nix::unistd::mkfifo(
                &dir.join(f),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| RuntimeError::Internal(format!("mkfifo {f}: {e}")))?;
        }
        let mut env: Vec<String> =
            vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
        // A container's clock is its node's, as it is read when the
        // container starts (the pod's own settings come later and win).
        env.extend(
            ackemu_base::CommonArgs::clock_env(&self.clock)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}")),
        );
        env.extend(
            config
                .envs
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value)),
        );
        let parent = if cgroup_parent.is_empty() {
            "kubepods.slice".to_string()
        } else {
            cgroup_parent
        };
        let spec = crate::runc::spec::Spec {
            process: crate::runc::spec::Process {
                args: argv,
                env,
                cwd: if config.working_dir.is_empty() {
                    "/".into()
                } else {
                    config.working_dir.clone()
                },
            },
            netns: Some(netns.display().to_string()),
            cgroups_path: format!("{parent}:cri-ackemu:{id}"),
            stdout: Some(dir.join("stdout.fifo").display().to_string()),
            stderr: Some(dir.join("stderr.fifo").display().to_string()),
            mounts: config
                .mounts
                .iter()
                .map(|m| crate::runc::spec::Mount {
                    destination: m.container_path.clone(),
                    source: m.host_path.clone(),
                    readonly: m.readonly,
                })
                .collect(),
        };
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap_or_default(),
        )
        .map_err(|e| RuntimeError::Internal(format!("writing the bundle: {e}")))?;
        let c = Arc::new(Container {
            id: id.clone(),
            lock: Mutex::new(()),
            holder: SyncMutex::new(String::new()),
            data: SyncMutex::new(ContainerData {
                sandbox_id: req.pod_sandbox_id.clone(),
                config,
                state: pb::ContainerState::ContainerCreated,
                created_at: self.now_ns(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                pid: 0,
                log_path,
                dir,
                reason: String::new(),
                message: String::new(),
            }),
            exited: CancellationToken::new(),
        });
        self.containers.lock().insert(id.clone(), c);
        Ok(id)
    }

    async fn lock_container<'a>(&self, c: &'a Container, op: &str) -> HeldLock<'a> {
        let holder = c.holder.lock().clone();
        let what = if holder.is_empty() {
            format!("container {} lock ({op})", short(&c.id))
        } else {
            format!("container {} lock ({op}; held by {holder})", short(&c.id))
        };
        let guard = wait_on(what, c.lock.lock()).await;
        *c.holder.lock() = op.to_string();
        HeldLock {
            _guard: guard,
            holder: &c.holder,
        }
    }

    /// `<runc> runc <common flags> args`, not started.
    fn runc_command(&self, args: &[String]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.cfg.runc_binary);
        cmd.arg("runc")
            .args(ackemu_base::CommonArgs::clock_flags(&self.clock))
            .arg("--run-dir")
            .arg(&self.cfg.run_dir)
            .arg("--root")
            .arg(&self.cfg.runc_root)
            .arg(format!("--systemd-cgroup={}", self.cfg.systemd_cgroup))
            .args(args);
        cmd
    }

    /// Run `<runc> runc … args` and wait for it, however long it takes.
    async fn runc(
        &self,
        op: &str,
        id: &str,
        args: &[String],
    ) -> Result<std::process::Output, RuntimeError> {
        let mut cmd = self.runc_command(args);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| RuntimeError::Internal(format!("starting runc {op}: {e}")))?;
        let pid = child.id().unwrap_or(0);
        let out = wait_on(
            format!("runc {op} {} (pid {pid})", short(id)),
            child.wait_with_output(),
        )
        .await
        .map_err(|e| RuntimeError::Internal(format!("waiting for runc {op}: {e}")))?;
        Ok(out)
    }

    fn runc_failed(op: &str, id: &str, out: &std::process::Output) -> RuntimeError {
        RuntimeError::Runc {
            op: op.into(),
            id: short(id).into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }
    }

    /// StartContainer: `runc run` under the container's lock.
    pub async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let c = self.container(id)?;
        let _g = self.lock_container(&c, "StartContainer").await;
        let dir = {
            let d = c.data.lock();
            if d.state != pb::ContainerState::ContainerCreated {
                return Err(RuntimeError::FailedPrecondition(format!(
                    "container {id} is not in created state"
                )));
            }
            d.dir.clone()
        };
        // Read ends first, read-write so runc's opens never block and the
        // copier sees no EOF before the container exits.
        let log_path = c.data.lock().log_path.clone();
        for (f, stream) in [("stdout.fifo", "stdout"), ("stderr.fifo", "stderr")] {
            let rx = tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(dir.join(f))
                .map_err(|e| RuntimeError::Internal(format!("opening {f}: {e}")))?;
            self.tasks.spawn(
                format!("runtime/log {} {stream}", short(id)),
                logs::copy(
                    rx,
                    stream,
                    log_path.clone(),
                    self.clock.clone(),
                    c.exited.clone(),
                ),
            );
        }
        let pid_file = dir.join("pid");
        let out = self
            .runc(
                "run",
                id,
                &[
                    "run".into(),
                    "--detach".into(),
                    "--bundle".into(),
                    dir.display().to_string(),
                    "--pid-file".into(),
                    pid_file.display().to_string(),
                    id.into(),
                ],
            )
            .await?;
        if !out.status.success() {
            let e = Self::runc_failed("run", id, &out);
            let mut d = c.data.lock();
            d.state = pb::ContainerState::ContainerExited;
            d.exit_code = 128;
            d.reason = "StartError".into();
            d.message = e.to_string();
            d.finished_at = self.now_ns();
            c.exited.cancel();
            return Err(e);
        }
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                RuntimeError::Internal(format!("runc wrote no pid to {}", pid_file.display()))
            })?;
        {
            let mut d = c.data.lock();
            d.pid = pid;
            d.state = pb::ContainerState::ContainerRunning;
            d.started_at = self.now_ns();
        }
        // It may have exited before we recorded it.
        self.reap(&c);
        Ok(())
    }

    /// StopContainer: SIGTERM, wait `timeout` seconds, SIGKILL.
    pub async fn stop_container(&self, id: &str, timeout_s: i64) -> Result<(), RuntimeError> {
        let c = self.container(id)?;
        let _g = self.lock_container(&c, "StopContainer").await;
        if c.data.lock().state != pb::ContainerState::ContainerRunning {
            return Ok(());
        }
        let out = self
            .runc("kill", id, &["kill".into(), id.into(), "SIGTERM".into()])
            .await?;
        if !out.status.success() {
            return Err(Self::runc_failed("kill", id, &out));
        }
        let grace = Duration::from_secs(timeout_s.max(0) as u64);
        let exited = c.exited.clone();
        let waited = self
            .clock
            .timeout(
                grace,
                wait_on(
                    format!("container {} exit after SIGTERM", short(id)),
                    exited.cancelled(),
                ),
            )
            .await;
        if waited.is_err() {
            let out = self
                .runc("kill", id, &["kill".into(), id.into(), "SIGKILL".into()])
                .await?;
            if !out.status.success() {
                return Err(Self::runc_failed("kill", id, &out));
            }
            wait_on(
                format!("container {} exit after SIGKILL", short(id)),
                c.exited.cancelled(),
            )
            .await;
        }
        Ok(())
    }

    /// RemoveContainer: `runc delete --force`, then its files.
    pub async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let Ok(c) = self.container(id) else {
            return Ok(());
        };
        let _g = self.lock_container(&c, "RemoveContainer").await;
        let (state, dir) = {
            let d = c.data.lock();
            (d.state, d.dir.clone())
        };
        if state == pb::ContainerState::ContainerRunning {
            return Err(RuntimeError::FailedPrecondition(format!(
                "container {id} is running: stop it first"
            )));
        }
        if self.cfg.runc_root.join(id).exists() {
            let out = self
                .runc(
                    "delete",
                    id,
                    &["delete".into(), "--force".into(), id.into()],
                )
                .await?;
            if !out.status.success() {
                return Err(Self::runc_failed("delete", id, &out));
            }
        }
        c.exited.cancel();
        std::fs::remove_dir_all(&dir).ok();
        self.containers.lock().remove(id);
        Ok(())
    }

    /// ContainerStatus: takes the container's lock, as docker's inspect
    /// did — so it waits behind a runc that never returns.
    pub async fn container_status(
        &self,
        id: &str,
    ) -> Result<pb::ContainerStatusResponse, RuntimeError> {
        let c = self.container(id)?;
        let holder = c.holder.lock().clone();
        let what = if holder.is_empty() {
            format!("container {} lock (ContainerStatus)", short(id))
        } else {
            format!(
                "container {} lock (ContainerStatus; held by {holder})",
                short(id)
            )
        };
        let _g = wait_on(what, c.lock.lock()).await;
        let d = c.data.lock();
        Ok(pb::ContainerStatusResponse {
            status: Some(pb::ContainerStatus {
                id: id.into(),
                metadata: d.config.metadata.clone(),
                state: d.state as i32,
                created_at: d.created_at,
                started_at: d.started_at,
                finished_at: d.finished_at,
                exit_code: d.exit_code,
                image: d.config.image.clone(),
                image_ref: d.config.image.clone().unwrap_or_default().image,
                reason: d.reason.clone(),
                message: d.message.clone(),
                labels: d.config.labels.clone(),
                annotations: d.config.annotations.clone(),
                mounts: d.config.mounts.clone(),
                log_path: d.log_path.display().to_string(),
            }),
            info: HashMap::from([("pid".to_string(), d.pid.to_string())]),
        })
    }

    /// ListContainers (lock-free snapshot).
    pub fn list_containers(&self, filter: Option<pb::ContainerFilter>) -> Vec<pb::Container> {
        let f = filter.unwrap_or_default();
        self.containers
            .lock()
            .values()
            .filter_map(|c| {
                let d = c.data.lock();
                let keep = (f.id.is_empty() || c.id == f.id)
                    && (f.pod_sandbox_id.is_empty() || d.sandbox_id == f.pod_sandbox_id)
                    && f.state.as_ref().is_none_or(|s| s.state == d.state as i32)
                    && f.label_selector
                        .iter()
                        .all(|(k, v)| d.config.labels.get(k) == Some(v));
                keep.then(|| pb::Container {
                    id: c.id.clone(),
                    pod_sandbox_id: d.sandbox_id.clone(),
                    metadata: d.config.metadata.clone(),
                    image: d.config.image.clone(),
                    image_ref: d.config.image.clone().unwrap_or_default().image,
                    state: d.state as i32,
                    created_at: d.created_at,
                    labels: d.config.labels.clone(),
                    annotations: d.config.annotations.clone(),
                })
            })
            .collect()
    }

    /// ExecSync: `runc exec` under the container's lock.
    pub async fn exec_sync(
        &self,
        req: pb::ExecSyncRequest,
    ) -> Result<pb::ExecSyncResponse, RuntimeError> {
        if req.cmd.is_empty() {
            return Err(RuntimeError::InvalidArgument(
                "ExecSync with an empty cmd".into(),
            ));
        }
        let c = self.container(&req.container_id)?;
        let _g = self.lock_container(&c, "ExecSync").await;
        let mut args = vec![
            "exec".to_string(),
            req.container_id.clone(),
            "--".to_string(),
        ];
        args.extend(req.cmd.iter().cloned());
        let run = self.runc("exec", &req.container_id, &args);
        let out = if req.timeout > 0 {
            self.clock
                .timeout(Duration::from_secs(req.timeout as u64), run)
                .await
                .map_err(|_| {
                    RuntimeError::DeadlineExceeded(format!(
                        "command {:?} timed out after {}s",
                        req.cmd, req.timeout
                    ))
                })??
        } else {
            run.await?
        };
        Ok(pb::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.status.code().unwrap_or(128),
        })
    }

    /// Record the exit of `c`'s process if it has one.
    fn reap(&self, c: &Container) {
        let pid = {
            let d = c.data.lock();
            if d.state != pb::ContainerState::ContainerRunning || d.pid == 0 {
                return;
            }
            d.pid
        };
        let Ok(raw) = i32::try_from(pid) else { return };
        let code = match nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(raw),
            Some(WaitPidFlag::WNOHANG),
        ) {
            Ok(WaitStatus::Exited(_, code)) => Some(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
            Ok(_) => None,
            // Not our child (no subreaper in the way): fall back to /proc.
            Err(_) => (!crate::proc::alive(pid)).then_some(-1),
        };
        if let Some(code) = code {
            let mut d = c.data.lock();
            d.state = pb::ContainerState::ContainerExited;
            d.exit_code = code;
            d.finished_at = self.now_ns();
            d.reason = if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            };
            drop(d);
            c.exited.cancel();
            tracing::info!(
                "runtime: container {} (pid {pid}) exited with {code}",
                short(&c.id)
            );
        }
    }

    fn start_reaper(&self) {
        let rt = self.clone();
        let token = self.tasks.token();
        self.tasks.spawn("runtime/reaper", async move {
            let mut sigchld =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!("runtime: SIGCHLD handler: {e}");
                        return;
                    }
                };
            let mut tick = rt.clock.interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = sigchld.recv() => {}
                    _ = tick.tick() => {}
                }
                let all: Vec<Arc<Container>> = rt.containers.lock().values().cloned().collect();
                for c in all {
                    rt.reap(&c);
                }
            }
        });
    }

    fn start_dump_on_sigusr1(&self) -> anyhow::Result<()> {
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
                .context("installing the SIGUSR1 handler")?;
        let root = self.cfg.root.clone();
        let clock = self.clock.clone();
        let token = self.tasks.token();
        self.tasks.spawn("runtime/sigusr1", async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    s = usr1.recv() => if s.is_none() { break },
                }
                let stamp = clock.wall_chrono().format("%Y-%m-%dT%H%M%S").to_string();
                let path = root.join(format!("runtime-stacks-{stamp}.log"));
                match std::fs::write(&path, ackemu_base::tasks::render_dump()) {
                    Ok(()) => tracing::info!("runtime: task dump written to {}", path.display()),
                    Err(e) => tracing::warn!("runtime: writing {}: {e}", path.display()),
                }
            }
        });
        Ok(())
    }
}

/// `registry/ackemu/app:1.0` → `app`.
pub fn image_program(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    last.split(':').next().unwrap_or(last).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_map_to_programs() {
        for (image, want) in [
            ("app", "app"),
            ("ackemu/app:1.0", "app"),
            ("registry.local:5000/ackemu/toolbox:latest", "toolbox"),
            ("pause@sha256:abc", "pause"),
        ] {
            assert_eq!(image_program(image), want, "{image}");
        }
    }
}
