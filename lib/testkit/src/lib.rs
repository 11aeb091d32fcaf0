//! `ackemu-testkit`: what the components' integration tests share — free
//! loopback ports, processes killed on drop, bounded polling, and a real
//! etcd plus a real `ackemu-apiserver` process with an admin client.
//!
//! It starts the API server as a binary found in the target directory
//! (built on demand), so depending on it keeps the architecture invariant:
//! no component crate depends on another. Only dev-dependencies use it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::client::{Client, ClientConfig};
use anyhow::{Context, bail};

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Polls `f` until it yields a value; `limit` (real time) only bounds
/// failure.
pub async fn eventually_within<F, Fut, T>(
    what: &str,
    limit: Duration,
    mut f: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let clock = Clock::real();
    let deadline = clock.now() + limit;
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

/// The target directory (`target/debug`) a test binary was built into.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/it-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf()
}

/// Binary `bin` of workspace package `package`, built when missing (the
/// calling crate does not depend on it, so `cargo test -p <crate>` alone
/// does not build it).
pub fn workspace_bin(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let path = target_dir().join(bin);
    if path.exists() {
        return Ok(path);
    }
    eprintln!(
        "{} is absent: building it (cargo build -p {package} --bin {bin})",
        path.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let target = target_dir().parent().context("target dir")?.to_path_buf();
    let st = Command::new(cargo)
        .args([
            "build",
            "-p",
            package,
            "--bin",
            bin,
            "--manifest-path",
            manifest,
        ])
        .env("CARGO_TARGET_DIR", target)
        .status()
        .with_context(|| format!("building {bin}"))?;
    if !st.success() || !path.exists() {
        bail!(
            "these tests need {}: `cargo build -p {package} --bin {bin}` failed",
            path.display()
        );
    }
    Ok(path)
}

/// A single-member etcd (Debian `etcd-server`) on free ports under `dir`.
pub struct Etcd {
    _proc: Proc,
    /// `127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Etcd {
    pub async fn start(dir: &Path) -> anyhow::Result<Etcd> {
        let (client_port, peer) = (free_port(), free_port());
        let endpoint = format!("127.0.0.1:{client_port}");
        let proc = Proc(
            Command::new("etcd")
                .arg("--data-dir")
                .arg(dir.join("etcd"))
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
        eventually_within("etcd to serve", Duration::from_secs(60), || {
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
        Ok(Etcd {
            _proc: proc,
            endpoint,
        })
    }
}

/// A real `ackemu-apiserver` on a store, with an admin client that has
/// seen it answer.
pub struct ApiServer {
    _proc: Proc,
    pub kubeconfig: PathBuf,
    pub api_port: u16,
    /// Its admin port (FaultService: clock offsets, failpoints).
    pub admin_port: u16,
    pub ca_pem: String,
    pub client: Client,
    /// `apiserver.log` under the directory it was started in.
    pub log: PathBuf,
}

impl ApiServer {
    /// Starts it under `dir` on `store` (etcd endpoints), with `extra`
    /// flags; `tasks` runs the admin client.
    pub async fn start(
        dir: &Path,
        store: &str,
        extra: &[String],
        tasks: &Tasks,
    ) -> anyhow::Result<ApiServer> {
        let api_port = free_port();
        let admin_port = free_port();
        let kubeconfig = dir.join("admin.kubeconfig");
        let log_path = dir.join("apiserver.log");
        let log = std::fs::File::create(&log_path)?;
        let proc = Proc(
            Command::new(workspace_bin("ackemu-apiserver", "ackemu-apiserver")?)
                .arg(format!("--secure-listen=127.0.0.1:{api_port}"))
                .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
                .arg(format!("--store-endpoints={store}"))
                .arg(format!("--pki-dir={}", dir.join("pki").display()))
                .arg(format!("--admin-kubeconfig={}", kubeconfig.display()))
                .args(extra)
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting ackemu-apiserver")?,
        );
        let limit = Duration::from_secs(90);
        let kc = kubeconfig.clone();
        let cfg = eventually_within("the admin kubeconfig", limit, || {
            let kc = kc.clone();
            async move {
                Ok(kc
                    .exists()
                    .then(|| ClientConfig::from_kubeconfig(&kc))
                    .transpose()?)
            }
        })
        .await?;
        let ca_pem = cfg.ca_pem.clone();
        let client = Client::new(cfg, tasks.clock().clone(), tasks.clone())?;
        let c2 = client.clone();
        eventually_within("the API server to answer", limit, || {
            let c = c2.clone();
            async move {
                Ok(c.request("GET", "/api/v1/namespaces/default", None)
                    .await
                    .ok()
                    .map(|_| ()))
            }
        })
        .await?;
        Ok(ApiServer {
            _proc: proc,
            kubeconfig,
            api_port,
            admin_port,
            ca_pem,
            client,
            log: log_path,
        })
    }
}
