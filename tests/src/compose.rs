//! [`ComposeCluster`]: the root `docker-compose.yml` cluster (one container
//! per store member, the cloud, one per ECS instance), driven through the
//! same user tools as a local one — `kubectl` and `etcdctl` on the ports
//! the compose file publishes on 127.0.0.1, `ackemu cloud` against the
//! published cloud API, `docker compose` for process faults and logs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ackemu_base::clock::Clock;
use anyhow::Context as _;
use serde_json::Value;

use crate::cluster::{Cluster, Output, kubectl_binary};

/// Worker containers in `docker-compose.yml` (ecs-1..3).
pub const MAX_NODES: u32 = 3;

/// Processes the master's UserData starts inside ecs-0's instance.
const MASTER_PROCESSES: [&str; 4] = [
    "apiserver",
    "controller-manager",
    "scheduler",
    "cloud-controller-manager",
];

/// How to start a compose cluster.
#[derive(Debug, Clone)]
pub struct ComposeOptions {
    /// The workspace root (where `docker-compose.yml` is).
    pub root: PathBuf,
    /// The cluster's data directory on the host (bind-mounted).
    pub data_dir: PathBuf,
    /// The compose project name (container and network names).
    pub project: String,
    /// The compose network's /24 (`10.213.7`): must not be in use.
    pub subnet_prefix: String,
    pub nodes: u32,
    pub time_scale: f64,
    pub store_quota_bytes: u64,
    /// How long `setup` may take (real time).
    pub ready_timeout: Duration,
}

/// Whether a Docker engine with compose is usable here; the reason when not.
pub async fn available() -> Result<(), String> {
    let docker = tokio::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .await
        .map_err(|e| format!("docker is not installed: {e}"))?;
    if !docker.status.success() {
        return Err(format!(
            "the docker engine does not answer: {}",
            String::from_utf8_lossy(&docker.stderr).trim()
        ));
    }
    compose_command()
        .await
        .map(|_| ())
        .ok_or_else(|| "neither `docker compose` nor `docker-compose` works".to_string())
}

/// `docker compose` (the plugin) or `docker-compose`.
async fn compose_command() -> Option<Vec<String>> {
    for argv in [vec!["docker", "compose"], vec!["docker-compose"]] {
        let ok = tokio::process::Command::new(argv[0])
            .args(&argv[1..])
            .arg("version")
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(argv.into_iter().map(str::to_owned).collect());
        }
    }
    None
}

/// A free TCP port on 127.0.0.1 (let go at once; compose binds it).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn run(bin: &str, args: &[String], env: &[(String, String)]) -> anyhow::Result<Output> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {bin}"))?;
    Ok(Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A running compose cluster.
pub struct ComposeCluster {
    compose: Vec<String>,
    file: PathBuf,
    project: String,
    env: Vec<(String, String)>,
    dir: PathBuf,
    ackemu: PathBuf,
    kubectl: String,
    time_scale: f64,
    epoch_ms: String,
    cloud_port: u16,
    store_ports: [u16; 3],
    ids: Value,
}

impl ComposeCluster {
    /// `docker compose up` of a fresh cluster; returns once `setup` has
    /// finished (every node Ready). On failure the cluster is taken down
    /// again and the error carries `setup`'s log.
    pub async fn up(ackemu: &Path, o: &ComposeOptions) -> anyhow::Result<ComposeCluster> {
        if o.nodes > MAX_NODES {
            anyhow::bail!(
                "the compose cluster has {MAX_NODES} worker containers, {} nodes asked for",
                o.nodes
            );
        }
        let compose = compose_command()
            .await
            .context("neither `docker compose` nor `docker-compose` works")?;
        std::fs::create_dir_all(&o.data_dir)
            .with_context(|| format!("creating {}", o.data_dir.display()))?;
        let dir = std::fs::canonicalize(&o.data_dir)?;
        let (api, cloud) = (free_port()?, free_port()?);
        let stores = [free_port()?, free_port()?, free_port()?];
        let env: Vec<(String, String)> = [
            ("ACKEMU_COMPOSE_DATA", dir.display().to_string()),
            ("ACKEMU_TIME_SCALE", o.time_scale.to_string()),
            ("ACKEMU_NODES", o.nodes.to_string()),
            ("ACKEMU_APISERVER_PORT", api.to_string()),
            ("ACKEMU_CLOUD_PORT", cloud.to_string()),
            ("ACKEMU_STORE_PORT_0", stores[0].to_string()),
            ("ACKEMU_STORE_PORT_1", stores[1].to_string()),
            ("ACKEMU_STORE_PORT_2", stores[2].to_string()),
            ("ACKEMU_STORE_QUOTA_BYTES", o.store_quota_bytes.to_string()),
            ("ACKEMU_SUBNET_PREFIX", o.subnet_prefix.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut c = ComposeCluster {
            compose,
            file: o.root.join("docker-compose.yml"),
            project: o.project.clone(),
            env,
            dir,
            ackemu: ackemu.to_path_buf(),
            kubectl: kubectl_binary(),
            time_scale: o.time_scale,
            epoch_ms: String::new(),
            cloud_port: cloud,
            store_ports: stores,
            ids: Value::Null,
        };
        match c.start(o.ready_timeout).await {
            Ok(()) => Ok(c),
            Err(e) => {
                let setup = c
                    .compose(&["logs", "--no-color", "setup", "cloud", "ecs-0"])
                    .await
                    .map(|o| o.text())
                    .unwrap_or_default();
                let _ = c.down(false).await;
                Err(e.context(format!("compose logs:\n{setup}")))
            }
        }
    }

    async fn start(&mut self, limit: Duration) -> anyhow::Result<()> {
        self.compose(&["up", "-d"]).await?.ok("docker compose up")?;
        let id = self
            .compose(&["ps", "-q", "setup"])
            .await?
            .ok("docker compose ps setup")?
            .trim()
            .to_owned();
        if id.is_empty() {
            anyhow::bail!("docker compose up started no setup container");
        }
        let wait = run("docker", &["wait".into(), id], &[]);
        let out = Clock::real()
            .timeout(limit, wait)
            .await
            .map_err(|_| anyhow::anyhow!("the compose setup did not finish within {limit:?}"))??;
        let code = out.ok("docker wait setup")?;
        if code.trim() != "0" {
            anyhow::bail!("the compose setup exited with status {}", code.trim());
        }
        self.load()
    }

    fn load(&mut self) -> anyhow::Result<()> {
        let read = |name: &str| {
            let p = self.dir.join(name);
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
        };
        self.epoch_ms = read("epoch-ms")?.trim().to_owned();
        self.ids = serde_json::from_str(&read("cloud-ids.json")?)?;
        Ok(())
    }

    async fn compose(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut all: Vec<String> = self.compose[1..].to_vec();
        all.extend([
            "-p".to_owned(),
            self.project.clone(),
            "-f".to_owned(),
            self.file.display().to_string(),
        ]);
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run(&self.compose[0], &all, &self.env).await
    }

    /// `docker compose down` (containers, network), and with `purge` the
    /// data directory.
    pub async fn down(&self, purge: bool) -> anyhow::Result<()> {
        self.compose(&["down", "--timeout", "10"])
            .await?
            .ok("docker compose down")?;
        if purge {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// The pid file of a process the master's UserData started.
    fn master_pid(&self, component: &str) -> anyhow::Result<String> {
        let p = self.dir.join("logs").join(format!("{component}.pid"));
        Ok(std::fs::read_to_string(&p)
            .with_context(|| format!("reading {}", p.display()))?
            .trim()
            .to_owned())
    }

    fn is_container(component: &str) -> bool {
        matches!(
            component,
            "store-0" | "store-1" | "store-2" | "cloud" | "ecs-0" | "ecs-1" | "ecs-2" | "ecs-3"
        )
    }
}

impl Cluster for ComposeCluster {
    fn backend(&self) -> &'static str {
        "compose"
    }

    fn time_scale(&self) -> f64 {
        self.time_scale
    }

    async fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut all = vec![
            "--kubeconfig".to_owned(),
            self.dir.join("kubeconfig").display().to_string(),
            "--request-timeout=20s".to_owned(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run(&self.kubectl, &all, &[]).await
    }

    fn kubectl_command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.kubectl);
        cmd.arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .args(args);
        cmd
    }

    async fn etcdctl(&self, member: Option<&str>, args: &[&str]) -> anyhow::Result<Output> {
        let eps: Vec<String> = self
            .store_members()
            .into_iter()
            .filter(|(n, _)| member.is_none_or(|m| m == n))
            .map(|(_, e)| e)
            .collect();
        if eps.is_empty() {
            anyhow::bail!("no store member {member:?}");
        }
        let mut all = vec![
            "--endpoints".to_owned(),
            eps.join(","),
            "--command-timeout".into(),
            "10s".into(),
            "--dial-timeout".into(),
            "3s".into(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        run("etcdctl", &all, &[("ETCDCTL_API".into(), "3".into())]).await
    }

    fn store_members(&self) -> Vec<(String, String)> {
        self.store_ports
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("store-{i}"), format!("127.0.0.1:{p}")))
            .collect()
    }

    fn cloud_id(&self, key: &str) -> Option<String> {
        self.ids[key].as_str().map(str::to_owned)
    }

    async fn process(&self, action: &str, component: &str) -> anyhow::Result<Output> {
        if Self::is_container(component) {
            let args: Vec<&str> = match action {
                "kill" => vec!["kill", "-s", "KILL", component],
                "term" => vec!["kill", "-s", "TERM", component],
                "stop" => vec!["pause", component],
                "cont" => vec!["unpause", component],
                "restart" => vec!["restart", component],
                other => anyhow::bail!(
                    "unknown process fault {other:?}: expected kill, term, stop, cont or restart"
                ),
            };
            return self.compose(&args).await;
        }
        if !MASTER_PROCESSES.contains(&component) {
            anyhow::bail!(
                "no component {component:?}: expected store-0..2, cloud, ecs-0..3 or one of {}",
                MASTER_PROCESSES.join(", ")
            );
        }
        let sig = match action {
            "kill" => "KILL",
            "term" => "TERM",
            "stop" => "STOP",
            "cont" => "CONT",
            other => anyhow::bail!(
                "process fault {other:?} of {component} on compose: expected kill, term, stop or cont (the master's UserData starts it once)"
            ),
        };
        let pid = self.master_pid(component)?;
        self.compose(&["exec", "-T", "ecs-0", "kill", "-s", sig, &pid])
            .await
    }

    async fn logs(&self, component: &str) -> anyhow::Result<String> {
        if Self::is_container(component) {
            return self
                .compose(&["logs", "--no-color", component])
                .await?
                .ok(&format!("docker compose logs {component}"));
        }
        let p = self.dir.join("logs").join(format!("{component}.log"));
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    async fn cloud(
        &self,
        product: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<Output> {
        let mut args = vec![
            "cloud".to_owned(),
            "--profile-file".into(),
            self.dir.join("cloud-profile.json").display().to_string(),
            "--endpoint".into(),
            format!("http://127.0.0.1:{}", self.cloud_port),
            "--time-scale".into(),
            self.time_scale.to_string(),
            "--cluster-epoch-ms".into(),
            self.epoch_ms.clone(),
            product.into(),
            action.into(),
        ];
        for (k, v) in params {
            args.push(format!("--{k}"));
            args.push((*v).to_owned());
        }
        run(&self.ackemu.display().to_string(), &args, &[]).await
    }
}
