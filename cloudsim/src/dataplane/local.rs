//! The local hypervisor backend: an ECS instance is a network namespace
//! `<prefix><instance-id>` whose `eth0` is a TUN device owned by the
//! instance's `ackemu-vnic` process, which pumps its packets to the fabric
//! and runs its UserData. Per-instance files (UserData, its output, the
//! NIC's log and pid) live in `<run_dir>/<instance-id>/`.
//!
//! Stop and delete leave nothing behind: the NIC is detached from the
//! fabric, the vnic stops every process of the instance (it is their
//! subreaper), strays still inside the namespace are killed, and the
//! namespace is deleted (its TUN goes with it).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use futures::future::BoxFuture;
use nix::sys::signal::Signal;
use tokio::io::AsyncBufReadExt as _;

use super::fabric::Fabric;
use super::netns::{self, DataplaneError, Result};
use super::vnic::TOKEN_ENV;
use super::wire;
use crate::cloud::Cloud;
use crate::hypervisor::{HypervisorBackend, HypervisorError, InstanceSpec};

#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Namespaces are `<prefix><instance-id>`.
    pub netns_prefix: String,
    /// Per-instance files.
    pub run_dir: PathBuf,
    pub vnic_binary: PathBuf,
    /// The ENI MTU.
    pub mtu: usize,
    /// How long an instance's processes get between SIGTERM and SIGKILL
    /// (cluster time).
    pub stop_grace: Duration,
    pub socket_buffer_bytes: usize,
    /// Passed to the NICs (`--spin-polls`).
    pub spin_polls: usize,
    /// Verbosity passed to the NICs.
    pub v: u8,
}

struct Inner {
    cfg: LocalConfig,
    fabric: Fabric,
    cloud: Cloud,
    host: NicHost,
    /// Real time for waiting on processes (process start-up does not speed
    /// up with the cluster clock).
    real: Clock,
}

/// See the module documentation.
#[derive(Clone)]
pub struct LocalBackend {
    inner: Arc<Inner>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct NicRecord {
    pid: i32,
    fabric: String,
}

fn herr(op: &'static str, id: &str, e: DataplaneError) -> HypervisorError {
    HypervisorError {
        op,
        instance_id: id.to_owned(),
        message: e.to_string(),
    }
}

/// How to start one instance's NIC: everything `ackemu-vnic` is told.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NicLaunch {
    pub instance_id: String,
    /// The instance's namespace (created by [`NicHost::start`]).
    pub netns: String,
    /// The fabric's underlay address as this host reaches it.
    pub fabric: std::net::SocketAddrV4,
    /// The ENI address with its prefix (`192.168.0.10/24`).
    pub address: String,
    pub gateway: std::net::Ipv4Addr,
    pub mtu: usize,
    pub stop_grace_ms: u64,
    pub socket_buffer_bytes: usize,
    pub spin_polls: usize,
    pub v: u8,
    /// `KEY=VALUE` for the UserData's environment.
    pub env: Vec<String>,
    /// The decoded UserData (empty: none).
    pub user_data: String,
    /// The hello token (never in argv).
    pub token: String,
}

impl NicLaunch {
    /// The launch of `spec`'s NIC in `netns`, talking to `fabric`.
    pub fn for_spec(
        spec: &InstanceSpec,
        netns: String,
        fabric: std::net::SocketAddrV4,
        token: String,
        knobs: &NicKnobs,
    ) -> NicLaunch {
        NicLaunch {
            instance_id: spec.instance_id.clone(),
            netns,
            fabric,
            address: format!("{}/{}", spec.private_ip, spec.prefix_len),
            gateway: spec.gateway,
            mtu: knobs.mtu,
            stop_grace_ms: knobs.stop_grace_ms,
            socket_buffer_bytes: knobs.socket_buffer_bytes,
            spin_polls: knobs.spin_polls,
            v: knobs.v,
            env: vec![
                format!("ACKEMU_PRIVATE_IP={}", spec.private_ip),
                format!("ACKEMU_HOSTNAME={}", spec.host_name),
            ],
            user_data: spec.user_data.clone(),
            token,
        }
    }
}

/// The NIC settings every instance of a backend shares.
#[derive(Debug, Clone)]
pub struct NicKnobs {
    pub mtu: usize,
    pub stop_grace_ms: u64,
    pub socket_buffer_bytes: usize,
    pub spin_polls: usize,
    pub v: u8,
}

/// Starts and stops instances' NICs on this machine (a namespace, an
/// `ackemu-vnic` process that is the instance's init, per-instance files
/// in `<run_dir>/<instance-id>/`). The local backend uses it directly;
/// in docker-compose each ECS container's host agent does
/// ([`super::compose`]).
#[derive(Clone)]
pub struct NicHost {
    pub run_dir: PathBuf,
    pub vnic_binary: PathBuf,
    tasks: ackemu_base::tasks::Tasks,
    /// Real time for waiting on processes.
    real: Clock,
}

impl NicHost {
    pub fn new(
        run_dir: PathBuf,
        vnic_binary: PathBuf,
        tasks: ackemu_base::tasks::Tasks,
    ) -> NicHost {
        NicHost {
            run_dir,
            vnic_binary,
            tasks,
            real: Clock::real(),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.run_dir.join(id)
    }

    /// What the instance's UserData printed (its `user-data.log`), as its
    /// console output.
    pub fn console_output(&self, id: &str) -> Option<String> {
        let bytes = std::fs::read(self.dir(id).join("user-data.log")).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        Some(crate::hypervisor::console_tail(&text).to_owned())
    }

    fn record(&self, id: &str) -> Option<NicRecord> {
        std::fs::read_to_string(self.dir(id).join("vnic.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    }

    /// The fabric address `id`'s NIC was started with.
    pub fn recorded_fabric(&self, id: &str) -> Option<String> {
        self.record(id).map(|r| r.fabric)
    }

    /// The pid of `id`'s NIC if it runs.
    pub fn nic_pid(&self, id: &str) -> Option<i32> {
        let r = self.record(id)?;
        (netns::alive(r.pid) && netns::cmdline(r.pid).contains(id)).then_some(r.pid)
    }

    /// Creates the namespace `l.netns` (stopping whatever ran there
    /// before).
    pub async fn prepare(&self, l: &NicLaunch, grace: Duration) -> Result<()> {
        self.teardown(&l.instance_id, &l.netns, grace, false)
            .await?;
        let dir = self.dir(&l.instance_id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| DataplaneError::new(format!("creating {}", dir.display()), e))?;
        netns::add(&l.netns).await
    }

    /// Starts the NIC in the namespace [`NicHost::prepare`] made and waits
    /// until it reports ready (its TUN is up; the UserData starts). On
    /// failure the instance is torn down again.
    pub async fn start(&self, l: &NicLaunch, grace: Duration) -> Result<()> {
        let id = &l.instance_id;
        let dir = self.dir(id);
        let log = std::fs::File::create(dir.join("vnic.log"))
            .map_err(|e| DataplaneError::new("creating vnic.log", e))?;
        let mut cmd = tokio::process::Command::new(&self.vnic_binary);
        cmd.arg("--netns")
            .arg(&l.netns)
            .args(["--instance-id", id])
            .arg("--fabric")
            .arg(l.fabric.to_string())
            .arg("--address")
            .arg(&l.address)
            .arg("--gateway")
            .arg(l.gateway.to_string())
            .arg("--mtu")
            .arg(l.mtu.to_string())
            .arg("--stop-grace-ms")
            .arg(l.stop_grace_ms.to_string())
            .arg("--socket-buffer-bytes")
            .arg(l.socket_buffer_bytes.to_string())
            .arg("--spin-polls")
            .arg(l.spin_polls.to_string())
            .arg("--v")
            .arg(l.v.to_string());
        for e in &l.env {
            cmd.arg("--env").arg(e);
        }
        if !l.user_data.is_empty() {
            let ud = dir.join("user-data");
            std::fs::write(&ud, &l.user_data)
                .map_err(|e| DataplaneError::new(format!("writing {}", ud.display()), e))?;
            cmd.arg("--user-data")
                .arg(&ud)
                .arg("--user-data-log")
                .arg(dir.join("user-data.log"));
        }
        cmd.env(TOKEN_ENV, &l.token)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            DataplaneError::new(format!("starting {}", self.vnic_binary.display()), e)
        })?;
        let pid = child.id().unwrap_or(0) as i32;
        let rec = NicRecord {
            pid,
            fabric: l.fabric.to_string(),
        };
        std::fs::write(
            dir.join("vnic.json"),
            serde_json::to_string(&rec).unwrap_or_default(),
        )
        .map_err(|e| DataplaneError::new("writing vnic.json", e))?;
        let stdout = child.stdout.take();
        let wid = id.clone();
        let token = self.tasks.token();
        self.tasks.spawn(format!("vnic/{id}/wait"), async move {
            tokio::select! {
                r = child.wait() => match r {
                    Ok(st) => tracing::info!("vnic of {wid} exited: {st}"),
                    Err(e) => tracing::warn!("waiting for the vnic of {wid}: {e}"),
                },
                // Shutting down: powered-off NICs have exited by now; with
                // --on-exit keep they run on without us.
                () = token.cancelled() => {}
            }
        });
        let ready = self
            .real
            .timeout(Duration::from_secs(20), async move {
                let mut lines = tokio::io::BufReader::new(stdout?).lines();
                lines.next_line().await.ok().flatten()
            })
            .await;
        if ready.ok().flatten().as_deref() != Some("ready") {
            let tail = std::fs::read_to_string(dir.join("vnic.log")).unwrap_or_default();
            let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            self.teardown(id, &l.netns, grace, false).await?;
            return Err(DataplaneError::new(
                format!("starting the nic of {id}"),
                format!("it did not report ready; its log ends: {tail}"),
            ));
        }
        Ok(())
    }

    /// Stops `id`'s NIC (TERM, `grace`, KILL: it stops the instance's
    /// processes), kills strays left in `ns` and deletes it; with
    /// `remove_files` also the run directory.
    pub async fn teardown(
        &self,
        id: &str,
        ns: &str,
        grace: Duration,
        remove_files: bool,
    ) -> Result<()> {
        let real = &self.real;
        if let Some(pid) = self.nic_pid(id) {
            netns::signal(pid, Signal::SIGTERM);
            let deadline = real.now() + grace + Duration::from_secs(2);
            while netns::alive(pid) && real.now() < deadline {
                real.sleep(Duration::from_millis(10)).await;
            }
            if netns::alive(pid) {
                netns::signal(pid, Signal::SIGKILL);
            }
        }
        // Strays: anything still inside the namespace.
        for _ in 0..250 {
            let left = netns::pids_in(ns);
            if left.is_empty() {
                break;
            }
            for p in left {
                netns::signal(p, Signal::SIGKILL);
            }
            real.sleep(Duration::from_millis(20)).await;
        }
        netns::del(ns).await?;
        let dir = self.dir(id);
        let _ = std::fs::remove_file(dir.join("vnic.json"));
        if remove_files {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(())
    }
}

impl LocalBackend {
    pub fn new(cfg: LocalConfig, fabric: Fabric, cloud: Cloud) -> LocalBackend {
        let host = NicHost::new(
            cfg.run_dir.clone(),
            cfg.vnic_binary.clone(),
            cloud.tasks().clone(),
        );
        LocalBackend {
            inner: Arc::new(Inner {
                cfg,
                fabric,
                cloud,
                host,
                real: Clock::real(),
            }),
        }
    }

    pub fn netns_name(&self, instance_id: &str) -> String {
        format!("{}{instance_id}", self.inner.cfg.netns_prefix)
    }

    /// The pid of `id`'s NIC if it runs.
    pub fn nic_pid(&self, id: &str) -> Option<i32> {
        self.inner.host.nic_pid(id)
    }

    fn grace(&self) -> Duration {
        self.inner.cloud.clock().to_real(self.inner.cfg.stop_grace)
    }

    fn knobs(&self) -> NicKnobs {
        let cfg = &self.inner.cfg;
        NicKnobs {
            mtu: cfg.mtu,
            stop_grace_ms: self.grace().as_millis() as u64,
            socket_buffer_bytes: cfg.socket_buffer_bytes,
            spin_polls: cfg.spin_polls,
            v: cfg.v,
        }
    }

    async fn boot_inner(&self, spec: &InstanceSpec) -> Result<()> {
        let id = &spec.instance_id;
        let fabric = &self.inner.fabric;
        fabric.detach(id);
        let token = wire::token(&self.inner.cloud.snapshot().signing_key, id);
        let launch = NicLaunch::for_spec(
            spec,
            self.netns_name(id),
            fabric.addr(),
            token,
            &self.knobs(),
        );
        let host = &self.inner.host;
        host.prepare(&launch, self.grace()).await?;
        fabric.expect(id);
        host.start(&launch, self.grace()).await?;
        self.wait_attached(id, Duration::from_secs(10)).await
    }

    async fn wait_attached(&self, id: &str, within: Duration) -> Result<()> {
        wait_attached(&self.inner.fabric, &self.inner.real, id, within).await
    }

    /// Stops everything of `id` and deletes its namespace; with
    /// `remove_files` also its run directory.
    pub async fn teardown(&self, id: &str, remove_files: bool) -> Result<()> {
        self.inner.fabric.detach(id);
        self.inner
            .host
            .teardown(id, &self.netns_name(id), self.grace(), remove_files)
            .await
    }

    /// After a cloudsim restart: keeps a running instance whose NIC is
    /// alive and talks to this fabric address (it re-attaches with its next
    /// hello); boots it again otherwise.
    pub async fn resume(&self, spec: &InstanceSpec) -> Result<()> {
        let id = &spec.instance_id;
        let same_fabric = self
            .inner
            .host
            .recorded_fabric(id)
            .is_some_and(|f| f == self.inner.fabric.addr().to_string());
        if netns::exists(&self.netns_name(id)) && self.nic_pid(id).is_some() && same_fabric {
            self.inner.fabric.expect(id);
            if self.wait_attached(id, Duration::from_secs(5)).await.is_ok() {
                tracing::info!("instance {id}: adopted its running nic");
                return Ok(());
            }
        }
        self.boot_inner(spec).await
    }

    /// Powers off every instance this backend knows about (the ids given
    /// and every namespace with our prefix).
    pub async fn power_off_all(&self, ids: impl IntoIterator<Item = String>) {
        let prefix = &self.inner.cfg.netns_prefix;
        let mut all: Vec<String> = ids.into_iter().collect();
        for ns in netns::list() {
            if let Some(id) = ns.strip_prefix(prefix.as_str())
                && id.starts_with("i-")
                && !all.iter().any(|x| x == id)
            {
                all.push(id.to_owned());
            }
        }
        let jobs = all.iter().map(|id| async move {
            if let Err(e) = self.teardown(id, false).await {
                tracing::warn!("powering off {id}: {e}");
            }
        });
        futures::future::join_all(jobs).await;
    }
}

/// Waits (real time) until `id`'s NIC said hello to the fabric.
pub async fn wait_attached(
    fabric: &Fabric,
    real: &Clock,
    id: &str,
    within: Duration,
) -> Result<()> {
    let deadline = real.now() + within;
    while fabric.attachment(id).is_none() {
        if real.now() >= deadline {
            return Err(DataplaneError::new(
                format!("attaching the nic of {id}"),
                "no hello reached the fabric",
            ));
        }
        real.sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

impl HypervisorBackend for LocalBackend {
    fn console_output(&self, instance_id: &str) -> Option<String> {
        self.inner.host.console_output(instance_id)
    }

    fn boot(
        &self,
        spec: InstanceSpec,
    ) -> BoxFuture<'static, std::result::Result<(), HypervisorError>> {
        let me = self.clone();
        Box::pin(async move {
            let id = spec.instance_id.clone();
            me.boot_inner(&spec)
                .await
                .map_err(|e| herr("boot", &id, e))?;
            if me.inner.cloud.tasks().token().is_cancelled() {
                // Shutting down: do not leave an instance behind.
                let _ = me.teardown(&id, false).await;
                return Err(HypervisorError {
                    op: "boot",
                    instance_id: id,
                    message: "cloudsim is shutting down".into(),
                });
            }
            Ok(())
        })
    }

    fn stop(
        &self,
        instance_id: String,
    ) -> BoxFuture<'static, std::result::Result<(), HypervisorError>> {
        let me = self.clone();
        Box::pin(async move {
            me.teardown(&instance_id, false)
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
            me.teardown(&instance_id, true)
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
            LocalBackend::resume(&me, &spec)
                .await
                .map_err(|e| herr("resume", &id, e))
        })
    }
}
