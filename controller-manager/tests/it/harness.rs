//! A real etcd and a real `ackemu-apiserver` process on free loopback
//! ports, and the controller-manager started in-process against them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ackemu_base::Env;
use ackemu_base::clock::Clock;
use ackemu_controller_manager::runtime::{self, Config, Handle};
use ackemu_kube::client::{Client, ClientConfig};
use anyhow::{Context, bail};

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

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The target directory this test binary was built into.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/it-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf()
}

/// The API server binary, built on demand when this crate's tests run alone.
fn apiserver_bin() -> anyhow::Result<PathBuf> {
    component_bin("ackemu-apiserver", "ackemu-apiserver")
}

/// Another component's binary from the target dir, built on demand.
pub fn component_bin(package: &str, name: &str) -> anyhow::Result<PathBuf> {
    let bin = target_dir().join(name);
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let target = target_dir().parent().context("target dir")?.to_path_buf();
        let st = Command::new(cargo)
            .args([
                "build",
                "-p",
                package,
                "--bin",
                name,
                "--manifest-path",
                manifest,
            ])
            .env("CARGO_TARGET_DIR", target)
            .status()
            .with_context(|| format!("building {name}"))?;
        if !st.success() {
            bail!("building {name} failed");
        }
    }
    Ok(bin)
}

/// etcd + API server + the controller-manager.
pub struct Cluster {
    _etcd: Proc,
    _apiserver: Proc,
    _dir: tempfile::TempDir,
    pub env: Env,
    pub client: Client,
    _cm: Handle,
}

impl Cluster {
    pub async fn start(controllers: &[&str]) -> anyhow::Result<Cluster> {
        Self::start_with(controllers, |_, _| {}).await
    }

    /// `tune` may adjust the configuration; it gets the API server's PKI
    /// directory (`ca.crt`, `ca.key`).
    pub async fn start_with(
        controllers: &[&str],
        tune: impl FnOnce(&mut Config, &Path),
    ) -> anyhow::Result<Cluster> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
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
        let client = Client::new(cfg.clone(), env.clock.clone(), env.tasks.clone())?;
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
        let mut config = Config::new(cfg);
        config.controllers = controllers.iter().map(|s| s.to_string()).collect();
        tune(&mut config, &dir.path().join("pki"));
        let cm = runtime::start(config, &env).await?;
        Ok(Cluster {
            _etcd: etcd,
            _apiserver: apiserver,
            _dir: dir,
            env,
            client,
            _cm: cm,
        })
    }
}

impl Cluster {
    /// The admin kubeconfig the API server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self._dir.path().join("admin.kubeconfig")
    }

    /// The cluster's scratch directory (logs, data).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.env.tasks.token().cancel();
    }
}
