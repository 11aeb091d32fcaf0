//! The clusters scenarios run against, through the interfaces a user has:
//! `kubectl`, `etcdctl`, `ackemu chaos`, `ackemu cloud`, `ackemu logs`.
//! Scenarios are written once against [`Cluster`]; [`LocalCluster`] is an
//! `ackemu up` cluster on this machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

/// What a command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout if the command succeeded, else an error with its stderr.
    pub fn ok(self, what: &str) -> anyhow::Result<String> {
        if self.ok {
            Ok(self.stdout)
        } else {
            anyhow::bail!("{what} failed: {}{}", self.stderr, self.stdout)
        }
    }

    /// Both streams.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A running cluster.
#[allow(async_fn_in_trait)]
pub trait Cluster {
    /// Backend name, for reports.
    fn backend(&self) -> &'static str;
    /// Cluster time per real time.
    fn time_scale(&self) -> f64;
    /// `kubectl <args>` with the cluster's admin kubeconfig.
    async fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output>;
    /// A `kubectl <args>` command to spawn (watches).
    fn kubectl_command(&self, args: &[&str]) -> tokio::process::Command;
    /// `etcdctl <args>` against the store members (`None`: all).
    async fn etcdctl(&self, member: Option<&str>, args: &[&str]) -> anyhow::Result<Output>;
    /// The store members' component names and client endpoints.
    fn store_members(&self) -> Vec<(String, String)>;
    /// A cloud resource of the cluster (`vpc`, `security_group`,
    /// `route_table`, `master_instance`, …).
    fn cloud_id(&self, key: &str) -> Option<String>;
    /// Every process of the cluster outside the workers (`ackemu status`'s
    /// names: the store members, the cloud, the master's components), for
    /// `ackemu chaos … --target`.
    fn components(&self) -> Vec<String> {
        let mut all: Vec<String> = self.store_members().into_iter().map(|(n, _)| n).collect();
        all.extend(
            [
                "apiserver",
                "controller-manager",
                "scheduler",
                "cloud-controller-manager",
            ]
            .map(String::from),
        );
        all
    }
    /// `ackemu chaos process <action> <component>`.
    async fn process(&self, action: &str, component: &str) -> anyhow::Result<Output>;
    /// A component's log.
    async fn logs(&self, component: &str) -> anyhow::Result<String>;
    /// `ackemu chaos <args>` (failpoints, clock, task dumps; targets as
    /// `ackemu chaos` takes them, `<instance-id>/<role>` for node processes).
    async fn chaos(&self, args: &[&str]) -> anyhow::Result<Output>;
    /// A unit's journal on worker `node` (`kubelet`, `runtime`, `cnid`, …).
    async fn node_log(&self, node: &str, unit: &str) -> anyhow::Result<String>;
    /// A command run on ECS instance `instance`, as over ssh.
    async fn ssh(&self, instance: &str, command: &[&str]) -> anyhow::Result<Output>;
    /// `ackemu cloud <product> <action> --K V ...`.
    async fn cloud(
        &self,
        product: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<Output>;
}

/// How to start a local cluster.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub nodes: u32,
    pub time_scale: f64,
    /// The store's `--quota-backend-bytes` (0: etcd's default).
    pub store_quota_bytes: u64,
    pub ready_timeout: Duration,
    /// Further `ackemu up` flags a scenario needs (e.g. `--mesh`).
    pub extra_args: Vec<String>,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            nodes: 0,
            time_scale: 60.0,
            store_quota_bytes: 0,
            ready_timeout: Duration::from_secs(180),
            extra_args: Vec::new(),
        }
    }
}

/// An `ackemu up` cluster in a data directory of this machine.
pub struct LocalCluster {
    dir: PathBuf,
    ackemu: PathBuf,
    kubectl: String,
    state: Value,
}

/// The kubectl to use: the versioned binary matching the API server
/// (v1.33), else the dispatcher.
pub fn kubectl_binary() -> String {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        if Path::new(dir).join("kubectl.1.33").exists() {
            return "kubectl.1.33".into();
        }
    }
    "kubectl".into()
}

async fn run(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .await
        .with_context(|| format!("running {}", bin.display()))?;
    Ok(Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

impl LocalCluster {
    /// `ackemu up` in `dir` (a fresh cluster), with `ackemu` the launcher.
    pub async fn up(ackemu: &Path, dir: &Path, o: &UpOptions) -> anyhow::Result<LocalCluster> {
        let d = dir.display().to_string();
        let (nodes, scale, quota, timeout) = (
            o.nodes.to_string(),
            o.time_scale.to_string(),
            o.store_quota_bytes.to_string(),
            format!("{}s", o.ready_timeout.as_secs()),
        );
        let mut args = vec![
            "up",
            "--data-dir",
            &d,
            "--apiserver-port",
            "0",
            "--nodes",
            &nodes,
            "--time-scale",
            &scale,
            "--store-quota-bytes",
            &quota,
            "--ready-timeout",
            &timeout,
        ];
        args.extend(o.extra_args.iter().map(String::as_str));
        let out = run(ackemu, &args, &[]).await?;
        if !out.ok {
            let _ = run(ackemu, &["down", "--data-dir", &d], &[]).await;
            anyhow::bail!("ackemu up failed:\n{}", out.text());
        }
        LocalCluster::attach(ackemu, dir)
    }

    /// A cluster that is already up in `dir`.
    pub fn attach(ackemu: &Path, dir: &Path) -> anyhow::Result<LocalCluster> {
        let p = dir.join("cluster.json");
        let state = serde_json::from_str(
            &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
        )?;
        Ok(LocalCluster {
            dir: dir.to_path_buf(),
            ackemu: ackemu.to_path_buf(),
            kubectl: kubectl_binary(),
            state,
        })
    }

    /// `ackemu down` (and delete the data with `purge`).
    pub async fn down(&self, purge: bool) -> anyhow::Result<()> {
        let d = self.dir.display().to_string();
        let mut args = vec!["down", "--data-dir", &d];
        if purge {
            args.push("--purge");
        }
        run(&self.ackemu, &args, &[]).await?.ok("ackemu down")?;
        Ok(())
    }

    fn data_dir(&self) -> String {
        self.dir.display().to_string()
    }
}

impl Cluster for LocalCluster {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn time_scale(&self) -> f64 {
        self.state["time_scale"].as_f64().unwrap_or(1.0)
    }

    async fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        let kc = self.dir.join("kubeconfig").display().to_string();
        let mut all = vec!["--kubeconfig", &kc, "--request-timeout=20s"];
        all.extend_from_slice(args);
        run(Path::new(&self.kubectl), &all, &[]).await
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
        let eps = eps.join(",");
        let mut all = vec![
            "--endpoints",
            &eps,
            "--command-timeout",
            "10s",
            "--dial-timeout",
            "3s",
        ];
        all.extend_from_slice(args);
        run(Path::new("etcdctl"), &all, &[("ETCDCTL_API", "3")]).await
    }

    fn store_members(&self) -> Vec<(String, String)> {
        let eps: Vec<String> = self.state["store_endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect();
        eps.into_iter()
            .enumerate()
            .map(|(i, e)| (format!("store-{i}"), e))
            .collect()
    }

    fn cloud_id(&self, key: &str) -> Option<String> {
        self.state["cloud"][key].as_str().map(str::to_owned)
    }

    fn components(&self) -> Vec<String> {
        self.state["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p[0].as_str().map(str::to_owned))
            .collect()
    }

    async fn process(&self, action: &str, component: &str) -> anyhow::Result<Output> {
        let d = self.data_dir();
        run(
            &self.ackemu,
            &["chaos", "process", action, component, "--data-dir", &d],
            &[],
        )
        .await
    }

    async fn logs(&self, component: &str) -> anyhow::Result<String> {
        let d = self.data_dir();
        run(&self.ackemu, &["logs", "--data-dir", &d, component], &[])
            .await?
            .ok(&format!("ackemu logs {component}"))
    }

    async fn chaos(&self, args: &[&str]) -> anyhow::Result<Output> {
        let d = self.data_dir();
        let mut all = vec!["chaos"];
        all.extend_from_slice(args);
        all.extend(["--data-dir", &d]);
        run(&self.ackemu, &all, &[]).await
    }

    async fn node_log(&self, node: &str, unit: &str) -> anyhow::Result<String> {
        let d = self.data_dir();
        run(
            &self.ackemu,
            &["logs", "--data-dir", &d, "--node", node, unit],
            &[],
        )
        .await?
        .ok(&format!("ackemu logs --node {node} {unit}"))
    }

    async fn ssh(&self, instance: &str, command: &[&str]) -> anyhow::Result<Output> {
        let d = self.data_dir();
        let mut all = vec!["ssh", "--data-dir", &d, instance, "--"];
        all.extend_from_slice(command);
        run(&self.ackemu, &all, &[]).await
    }

    async fn cloud(
        &self,
        product: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<Output> {
        let profile = self.dir.join("cloud-profile.json").display().to_string();
        let mut args = vec!["cloud".to_owned(), "--profile-file".into(), profile];
        args.push(product.into());
        args.push(action.into());
        for (k, v) in params {
            args.push(format!("--{k}"));
            args.push((*v).to_owned());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&self.ackemu, &refs, &[]).await
    }
}
