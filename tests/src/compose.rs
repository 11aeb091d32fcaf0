//! [`ComposeCluster`]: the root `docker-compose.yml` cluster (one container
//! per store member, the cloud, one per ECS instance), driven through the
//! same user tools as a local one — `kubectl` and `etcdctl` on the ports
//! the compose file publishes on 127.0.0.1, `ackemu cloud` against the
//! published cloud API, `docker compose` for process faults and logs, and
//! `docker compose exec` into an ECS container (then `ip netns exec` into
//! its instance) for what an operator does on a machine: `ackemu chaos`
//! against a node's admin ports, commands over "ssh".

use std::path::{Path, PathBuf};
use std::time::Duration;

use ackemu_base::clock::Clock;
use anyhow::Context as _;
use serde_json::Value;

use crate::cluster::{Cluster, Output, kubectl_binary};

/// Worker containers in `docker-compose.yml` (ecs-1..3).
pub const MAX_NODES: u32 = 3;

/// Processes the master's UserData (`docker/master-user-data.sh`) starts
/// inside ecs-0's instance, with their admin ports on its loopback.
const MASTER_PROCESSES: [(&str, u16); 4] = [
    ("apiserver", 10900),
    ("controller-manager", 10901),
    ("scheduler", 10902),
    ("cloud-controller-manager", 10903),
];

/// The containers' services, their admin port (`--admin-listen=0.0.0.0:9090`).
const CONTAINERS: [&str; 8] = [
    "store-0", "store-1", "store-2", "cloud", "ecs-0", "ecs-1", "ecs-2", "ecs-3",
];

/// Instances' namespaces inside their ECS containers are `<it><id>`
/// (cloudsim's `--netns-prefix`).
const NETNS_PREFIX: &str = "ak-";

/// The image's `PATH` (`docker/build-images.sh`).
const IMAGE_PATH: &str = "/ackemu/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The image the compose file runs by default.
pub const IMAGE: &str = "ackemu:dev";

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
    /// Also install the service mesh add-on (`ackemu up --mesh`).
    pub mesh: bool,
    /// How long `setup` may take (real time).
    pub ready_timeout: Duration,
}

impl ComposeOptions {
    /// A cluster of no workers (scenarios set theirs) from the compose file
    /// in `root`, with its data in `data_dir`.
    pub fn new(
        root: PathBuf,
        data_dir: PathBuf,
        project: &str,
        subnet_prefix: &str,
        time_scale: f64,
    ) -> ComposeOptions {
        ComposeOptions {
            root,
            data_dir,
            project: project.to_owned(),
            subnet_prefix: subnet_prefix.to_owned(),
            nodes: 0,
            time_scale,
            store_quota_bytes: 0,
            mesh: false,
            ready_timeout: Duration::from_secs(300),
        }
    }

    /// Options for the cluster of a scenario that `ackemu up` would start
    /// with `up_args`; the compose cluster knows `--mesh` only.
    pub fn with_up_args(mut self, up_args: &[&str]) -> anyhow::Result<ComposeOptions> {
        for a in up_args {
            match *a {
                "--mesh" => self.mesh = true,
                other => anyhow::bail!(
                    "the compose cluster has no equivalent of `ackemu up {other}` (it knows --mesh)"
                ),
            }
        }
        Ok(self)
    }
}

/// The workspace this crate was built in (where `docker-compose.yml` and
/// `docker/` are).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
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

/// The newest modification time (unix seconds) of the files the image
/// is built from: `ackemu` and `ackemu-*` in `bin_dir`, `docker/*.sh`
/// (what `docker/build-images.sh` records in the label `ackemu.stamp`).
fn sources_stamp(root: &Path, bin_dir: &Path) -> anyhow::Result<u64> {
    let mut newest = 0;
    for (dir, keep) in [
        (
            bin_dir.to_path_buf(),
            (|n: &str| n == "ackemu" || n.starts_with("ackemu-")) as fn(&str) -> bool,
        ),
        (root.join("docker"), |n: &str| n.ends_with(".sh")),
    ] {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in entries {
            let e = e?;
            if !e.file_name().to_str().is_some_and(keep) {
                continue;
            }
            let modified = std::fs::metadata(e.path())?.modified()?;
            let secs = modified
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            newest = newest.max(secs);
        }
    }
    Ok(newest)
}

/// Builds `image` with `docker/build-images.sh --no-build` from the
/// binaries in `bin_dir` (`<target>/debug`) unless it exists and was
/// built from what is there now (its `ackemu.stamp` label).
pub async fn ensure_image(root: &Path, bin_dir: &Path, image: &str) -> anyhow::Result<()> {
    let want = sources_stamp(root, bin_dir)?.to_string();
    let label = run(
        "docker",
        &[
            "image".into(),
            "inspect".into(),
            "--format".into(),
            r#"{{index .Config.Labels "ackemu.stamp"}}"#.into(),
            image.into(),
        ],
        &[],
    )
    .await?;
    if label.ok && label.stdout.trim() == want {
        return Ok(());
    }
    let target = bin_dir
        .parent()
        .with_context(|| format!("{} has no parent (the target directory)", bin_dir.display()))?;
    println!("building {image} from {}", bin_dir.display());
    let script = root.join("docker/build-images.sh");
    run(
        &script.display().to_string(),
        &["--no-build".into(), "--tag".into(), image.into()],
        &[("CARGO_TARGET_DIR".into(), target.display().to_string())],
    )
    .await?
    .ok("docker/build-images.sh --no-build")?;
    Ok(())
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
    subnet_prefix: String,
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
            ("ACKEMU_MESH", u8::from(o.mesh).to_string()),
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
            subnet_prefix: o.subnet_prefix.clone(),
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
        let wait_args = ["wait".to_owned(), id];
        let wait = run("docker", &wait_args, &[]);
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
    /// data directory; without, the containers' logs are kept in it first
    /// (`compose.log`).
    pub async fn down(&self, purge: bool) -> anyhow::Result<()> {
        if !purge {
            let logs = self.compose(&["logs", "--no-color"]).await?.text();
            let p = self.dir.join("compose.log");
            std::fs::write(&p, logs).with_context(|| format!("writing {}", p.display()))?;
        }
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
        CONTAINERS.contains(&component)
    }

    fn master_instance(&self) -> anyhow::Result<String> {
        self.cloud_id("master_instance")
            .context("the cluster has no master instance")
    }

    /// The ECS container (its compose service) that hosts `instance`,
    /// from cloudsim's assignments (`cloudsim/compose-hosts.json`, host
    /// agents by address: ecs-N is `<subnet>.2N`).
    fn container_of(&self, instance: &str) -> anyhow::Result<String> {
        let p = self.dir.join("cloudsim").join("compose-hosts.json");
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let hosts: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        let Some(host) = hosts.get(instance) else {
            let ids: Vec<&str> = hosts.keys().map(String::as_str).collect();
            anyhow::bail!(
                "no instance {instance:?} in an ECS container: expected one of {}",
                ids.join(", ")
            );
        };
        (0..4)
            .map(|i| (format!("{}.{}:7070", self.subnet_prefix, 20 + i), i))
            .find(|(h, _)| h == host)
            .map(|(_, i)| format!("ecs-{i}"))
            .with_context(|| format!("instance {instance} is on {host}, not an ECS container"))
    }

    /// A worker's directory on the host (bind-mounted as
    /// `/ackemu/data/nodes/<id>` in its container).
    fn node_dir(&self, node: &str) -> anyhow::Result<PathBuf> {
        let root = self.dir.join("nodes").join(node);
        if node.is_empty() || node.contains('/') || !root.is_dir() {
            let mut nodes: Vec<String> = std::fs::read_dir(self.dir.join("nodes"))
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            nodes.sort();
            anyhow::bail!(
                "no node {node:?}: expected one of {}",
                if nodes.is_empty() {
                    "(no workers yet)".to_owned()
                } else {
                    nodes.join(", ")
                }
            );
        }
        Ok(root)
    }

    /// Where `ackemu chaos --target <target>` runs in the compose cluster:
    /// the container, the instance namespace in it (if any), and the
    /// admin address as seen from there.
    fn admin_of(&self, target: &str) -> anyhow::Result<(String, Option<String>, String)> {
        if Self::is_container(target) {
            return Ok((target.to_owned(), None, "127.0.0.1:9090".to_owned()));
        }
        if let Some((_, port)) = MASTER_PROCESSES.iter().find(|(n, _)| *n == target) {
            let ns = format!("{NETNS_PREFIX}{}", self.master_instance()?);
            return Ok(("ecs-0".to_owned(), Some(ns), format!("127.0.0.1:{port}")));
        }
        if let Some((node, role)) = target.split_once('/') {
            let file = self.node_dir(node)?.join("admin.json");
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "node {node} has no admin ports ({} is missing)",
                    file.display()
                )
            })?;
            let map: serde_json::Map<String, Value> = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", file.display()))?;
            let addr = map.get(role).and_then(Value::as_str).with_context(|| {
                let roles: Vec<&str> = map.keys().map(String::as_str).collect();
                format!(
                    "node {node} has no process {role:?}: expected one of {}",
                    roles.join(", ")
                )
            })?;
            let ns = format!("{NETNS_PREFIX}{node}");
            return Ok((self.container_of(node)?, Some(ns), addr.to_owned()));
        }
        let masters: Vec<&str> = MASTER_PROCESSES.iter().map(|(n, _)| *n).collect();
        anyhow::bail!(
            "no chaos target {target:?}: expected {}, {} or <instance-id>/<role>",
            CONTAINERS.join(", "),
            masters.join(", ")
        )
    }

    /// `docker compose exec` into `container`, inside instance namespace
    /// `netns` when given.
    async fn exec_in(
        &self,
        container: &str,
        netns: Option<&str>,
        options: &[String],
        command: &[&str],
    ) -> anyhow::Result<Output> {
        let mut all: Vec<&str> = vec!["exec", "-T"];
        all.extend(options.iter().map(String::as_str));
        all.push(container);
        if let Some(ns) = netns {
            all.extend(["ip", "netns", "exec", ns]);
        }
        all.extend_from_slice(command);
        self.compose(&all).await
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
        if !MASTER_PROCESSES.iter().any(|(n, _)| *n == component) {
            let masters: Vec<&str> = MASTER_PROCESSES.iter().map(|(n, _)| *n).collect();
            anyhow::bail!(
                "no component {component:?}: expected store-0..2, cloud, ecs-0..3 or one of {}",
                masters.join(", ")
            );
        }
        let sig = match action {
            "kill" => "KILL",
            "term" => "TERM",
            "stop" => "STOP",
            "cont" => "CONT",
            other => anyhow::bail!(
                "process fault {other:?} of {component} on compose: expected kill, term, stop or cont (its supervisor restarts it when it exits; kill ends both)"
            ),
        };
        // The pid is its supervisor's, which leads the component's group.
        let group = format!("-{}", self.master_pid(component)?);
        self.compose(&["exec", "-T", "ecs-0", "kill", "-s", sig, "--", &group])
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

    async fn chaos(&self, args: &[&str]) -> anyhow::Result<Output> {
        if let ["process", action, component] = args {
            return self.process(action, component).await;
        }
        // `--target X` names the process; the command runs where its admin
        // port is reachable, with the target rewritten to that address.
        let at = args
            .iter()
            .position(|a| *a == "--target" || a.starts_with("--target="))
            .context("ackemu chaos needs --target")?;
        let target = match args[at].strip_prefix("--target=") {
            Some(t) => t.to_owned(),
            None => (*args.get(at + 1).context("--target needs a value")?).to_owned(),
        };
        let (container, netns, addr) = self.admin_of(&target)?;
        let flag = format!("--target={addr}");
        let mut command: Vec<&str> = vec!["ackemu", "chaos"];
        for (i, a) in args.iter().enumerate() {
            if i == at {
                command.push(&flag);
            } else if !(i == at + 1 && args[at] == "--target") {
                command.push(a);
            }
        }
        self.exec_in(&container, netns.as_deref(), &[], &command)
            .await
    }

    async fn node_log(&self, node: &str, unit: &str) -> anyhow::Result<String> {
        let root = self.node_dir(node)?;
        let path = match unit {
            "attach" | "systemd" => root.join(format!("{unit}.log")),
            u => root
                .join("journal")
                .join(format!("{}.service.log", u.trim_end_matches(".service"))),
        };
        if !path.exists() {
            let mut units: Vec<String> = std::fs::read_dir(root.join("journal"))
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let n = e.ok()?.file_name().into_string().ok()?;
                    n.strip_suffix(".service.log").map(str::to_owned)
                })
                .collect();
            units.sort();
            units.extend(["attach".to_owned(), "systemd".to_owned()]);
            anyhow::bail!(
                "node {node} has no log of {unit:?}: expected one of {}",
                units.join(", ")
            );
        }
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    async fn ssh(&self, instance: &str, command: &[&str]) -> anyhow::Result<Output> {
        let container = self.container_of(instance)?;
        let ns = format!("{NETNS_PREFIX}{instance}");
        let mut options = vec![
            "-e".to_owned(),
            format!("PATH={IMAGE_PATH}"),
            "-e".to_owned(),
            format!("ACKEMU_INSTANCE_ID={instance}"),
        ];
        // On a worker: its files are home, and the node's tools find its
        // sockets (as `ackemu ssh` sets them up).
        if self.dir.join("nodes").join(instance).is_dir() {
            let root = format!("/ackemu/data/nodes/{instance}");
            options.extend([
                "-w".to_owned(),
                root.clone(),
                "-e".to_owned(),
                format!("ACKEMU_NODE_RUN_DIR={root}/run"),
                "-e".to_owned(),
                format!("ACKEMU_NODE_DIR={root}"),
            ]);
        }
        let command = if command.is_empty() {
            &["/bin/sh"][..]
        } else {
            command
        };
        self.exec_in(&container, Some(&ns), &options, command).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_options_take_the_mesh_and_refuse_what_compose_lacks() {
        let base = ComposeOptions::new(
            PathBuf::from("/w"),
            PathBuf::from("/w/d"),
            "p",
            "10.213.9",
            60.0,
        );
        assert!(!base.mesh);
        assert!(base.clone().with_up_args(&["--mesh"]).unwrap().mesh);
        let err = base
            .with_up_args(&["--autoscaler"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ackemu up --autoscaler") && err.contains("--mesh"),
            "{err}"
        );
    }
}
