//! A real etcd and a real `ackemu-apiserver` process on free loopback
//! ports, and `ackemu-scheduler` processes started against them. Nodes are
//! plain Node objects (no kubelet): the test sets their allocatable and
//! Ready condition itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ackemu_base::Env;
use ackemu_base::clock::Clock;
use ackemu_kube::api::core::v1::{Event, Node, Pod};
use ackemu_kube::client::{Client, ClientConfig, ListParams};
use anyhow::{Context, bail};
use serde_json::{Value, json};

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Polls `f` until it yields a value; the deadline only bounds failure.
pub async fn eventually<F, Fut, T>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let clock = Clock::real();
    let deadline = clock.now() + Duration::from_secs(60);
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if clock.now() > deadline {
            bail!("timed out waiting for {what}; last error: {last_err:?}");
        }
        // Pacing between polls, not a synchronisation point.
        clock.sleep(Duration::from_millis(100)).await;
    }
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The target directory this test binary was built into.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/it-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf()
}

/// The API server binary; built when missing (this crate does not depend
/// on it, so `cargo test -p ackemu-scheduler` alone does not build it).
fn apiserver_bin() -> anyhow::Result<PathBuf> {
    let bin = target_dir().join("ackemu-apiserver");
    if bin.exists() {
        return Ok(bin);
    }
    eprintln!(
        "{} is absent: building it (cargo build -p ackemu-apiserver --bin ackemu-apiserver)",
        bin.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let target = target_dir().parent().context("target dir")?.to_path_buf();
    let st = Command::new(cargo)
        .args([
            "build",
            "-p",
            "ackemu-apiserver",
            "--bin",
            "ackemu-apiserver",
            "--manifest-path",
            manifest,
        ])
        .env("CARGO_TARGET_DIR", target)
        .status()
        .context("building ackemu-apiserver")?;
    if !st.success() || !bin.exists() {
        bail!(
            "the scheduler's integration tests need {}: `cargo build -p ackemu-apiserver --bin ackemu-apiserver` failed",
            bin.display()
        );
    }
    Ok(bin)
}

/// A running `ackemu-scheduler`.
pub struct Scheduler {
    pub proc: Proc,
    pub log: PathBuf,
}

impl Scheduler {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str) -> anyhow::Result<()> {
        eventually(&format!("{:?} in {}", needle, self.log.display()), || {
            let found = self.log_text().contains(needle);
            async move { Ok(found.then_some(())) }
        })
        .await
    }

    pub fn kill(&mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
    }
}

/// etcd + API server, and an admin client.
pub struct Cluster {
    _etcd: Proc,
    _apiserver: Proc,
    pub dir: tempfile::TempDir,
    pub env: Env,
    pub client: Client,
    pub kubeconfig: PathBuf,
    schedulers: usize,
}

impl Cluster {
    pub async fn start() -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let (client_port, peer) = (free_port(), free_port());
        let endpoint = format!("127.0.0.1:{client_port}");
        let etcd = Proc(
            Command::new("etcd")
                .arg("--data-dir")
                .arg(dir.path().join("etcd"))
                .args(["--listen-client-urls", &format!("http://{endpoint}")])
                .args(["--advertise-client-urls", &format!("http://{endpoint}")])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args([
                    "--initial-cluster",
                    &format!("default=http://127.0.0.1:{peer}"),
                ])
                .args(["--log-level", "error"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting etcd (Debian package etcd-server)")?,
        );
        let ep = endpoint.clone();
        eventually("etcd to serve", || {
            let ep = ep.clone();
            async move {
                let out = tokio::process::Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", &ep, "endpoint", "health"])
                    .output()
                    .await?;
                Ok(out.status.success().then_some(()))
            }
        })
        .await?;
        let api_port = free_port();
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let log = std::fs::File::create(dir.path().join("apiserver.log"))?;
        let apiserver = Proc(
            Command::new(apiserver_bin()?)
                .arg(format!("--secure-listen=127.0.0.1:{api_port}"))
                .arg(format!("--store-endpoints={endpoint}"))
                .arg(format!("--pki-dir={}", dir.path().join("pki").display()))
                .arg(format!("--admin-kubeconfig={}", kubeconfig.display()))
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting ackemu-apiserver")?,
        );
        let env = Env::for_test(Clock::real());
        let kc = kubeconfig.clone();
        let cfg = eventually("the admin kubeconfig", || {
            let kc = kc.clone();
            async move {
                Ok(kc
                    .exists()
                    .then(|| ClientConfig::from_kubeconfig(&kc))
                    .transpose()?)
            }
        })
        .await?;
        let client = Client::new(cfg, env.clock.clone(), env.tasks.clone())?;
        let c2 = client.clone();
        eventually("the API server to answer", || {
            let c = c2.clone();
            async move {
                Ok(c.request("GET", "/api/v1/namespaces/default", None)
                    .await
                    .ok()
                    .map(|_| ()))
            }
        })
        .await?;
        // The ServiceAccount admission plugin needs the default account
        // (the controller-manager is not running here).
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "default"}});
        client
            .request(
                "POST",
                "/api/v1/namespaces/default/serviceaccounts",
                Some(("application/json", sa.to_string().into_bytes())),
            )
            .await?;
        Ok(Cluster {
            _etcd: etcd,
            _apiserver: apiserver,
            dir,
            env,
            client,
            kubeconfig,
            schedulers: 0,
        })
    }

    /// Starts an `ackemu-scheduler` with `args` (after `--kubeconfig`).
    pub fn scheduler(&mut self, args: &[&str]) -> anyhow::Result<Scheduler> {
        self.schedulers += 1;
        let log = self
            .dir
            .path()
            .join(format!("scheduler-{}.log", self.schedulers));
        let f = std::fs::File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_ackemu-scheduler"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .context("starting ackemu-scheduler")?;
        Ok(Scheduler {
            proc: Proc(child),
            log,
        })
    }

    /// Creates a Ready node with `cpu`/`memory` allocatable, labels and
    /// taints (`key=value:Effect`).
    pub async fn node(
        &self,
        name: &str,
        cpu: &str,
        memory: &str,
        labels: &[(&str, &str)],
        taints: &[(&str, &str, &str)],
    ) -> anyhow::Result<()> {
        let mut l: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        l.insert("kubernetes.io/hostname".into(), json!(name));
        let taints: Vec<Value> = taints
            .iter()
            .map(|(k, v, e)| json!({"key": k, "value": v, "effect": e}))
            .collect();
        let status = json!({
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status"}],
        });
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": l},
            "spec": {"taints": taints},
            "status": status});
        let api = self.client.api::<Node>(None)?;
        let created = api.dynamic().create(&node).await?;
        if created["status"]["allocatable"]["cpu"] != json!(cpu) {
            let mut n = created;
            n["status"] = status;
            api.dynamic().replace(name, "status", &n).await?;
        }
        Ok(())
    }

    /// Creates a pod in `default`; `spec` is merged over one container
    /// requesting `cpu`.
    pub async fn pod(&self, name: &str, cpu: &str, spec: Value) -> anyhow::Result<()> {
        let mut s = json!({"containers": [{"name": "app", "image": "registry.local/app:1",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]});
        if let (Some(o), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                o.insert(k.clone(), v.clone());
            }
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"}, "spec": s});
        self.client
            .api::<Pod>(Some("default"))?
            .dynamic()
            .create(&pod)
            .await?;
        Ok(())
    }

    pub async fn get_pod(&self, name: &str) -> anyhow::Result<Pod> {
        Ok(self.client.api::<Pod>(Some("default"))?.get(name).await?)
    }

    /// Waits until the pod is bound; returns its node.
    pub async fn bound_node(&self, name: &str) -> anyhow::Result<String> {
        eventually(&format!("pod {name} to be bound"), || async {
            let p = self.get_pod(name).await?;
            Ok(p.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()))
        })
        .await
    }

    /// Events about one pod in `default`.
    pub async fn pod_events(&self, name: &str) -> anyhow::Result<Vec<Event>> {
        let (events, _) = self
            .client
            .api::<Event>(Some("default"))?
            .list(&ListParams::default())
            .await?;
        Ok(events
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect())
    }

    /// Waits for an event about `pod` with `reason`; returns its message.
    pub async fn event(&self, pod: &str, reason: &str) -> anyhow::Result<Event> {
        eventually(&format!("a {reason} event for pod {pod}"), || async {
            Ok(self
                .pod_events(pod)
                .await?
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason)))
        })
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.env.tasks.token().cancel();
        // ACKEMU_TEST_LOGS=1 prints the processes' logs (nextest shows
        // them for failed tests).
        if std::env::var_os("ACKEMU_TEST_LOGS").is_some()
            && let Ok(entries) = std::fs::read_dir(self.dir.path())
        {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(80).collect();
                    eprintln!("==== {} (last 80 lines)", p.display());
                    for l in tail.into_iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

/// The pod's `PodScheduled` condition (status, reason, message).
pub fn pod_scheduled(p: &Pod) -> Option<(String, String, String)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}
