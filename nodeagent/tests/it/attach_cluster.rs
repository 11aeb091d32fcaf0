//! A control plane for the attach tests: a real etcd, the real
//! `ackemu-apiserver` and `ackemu-controller-manager` binaries from the
//! target directory (built on demand), on free loopback ports.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::client::{Client, ClientConfig};
use anyhow::{Context as _, bail};

use crate::util::Proc;

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Poll `f` until it yields a value; the deadline only bounds failure.
pub async fn eventually<F, Fut, T>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let clock = Clock::real();
    let deadline = clock.now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
        if clock.now() > deadline {
            bail!("timed out waiting for {what}; last error: {last:?}");
        }
        clock.sleep(Duration::from_millis(100)).await;
    }
}

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf()
}

/// A sibling binary of this test, built on demand.
pub fn bin(package: &str, name: &str) -> anyhow::Result<PathBuf> {
    let b = target_dir().join(name);
    if !b.exists() {
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
    Ok(b)
}

pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub client: Client,
    pub clock: Clock,
    pub tasks: Tasks,
    _etcd: Proc,
    _apiserver: Proc,
    cm: Option<Proc>,
}

impl ControlPlane {
    pub async fn start() -> anyhow::Result<ControlPlane> {
        let dir = tempfile::tempdir()?;
        let (client_port, peer) = (free_port(), free_port());
        let endpoint = format!("127.0.0.1:{client_port}");
        let mut cmd = Command::new("etcd");
        cmd.arg("--data-dir")
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
            .args(["--log-level", "error"]);
        let etcd = Proc::spawn(cmd, &dir.path().join("etcd.log"));
        let ep = endpoint.clone();
        eventually("etcd to serve", || {
            let ep = ep.clone();
            async move {
                let out = tokio::process::Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", &ep, "endpoint", "health"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await?;
                Ok(out.success().then_some(()))
            }
        })
        .await?;
        let api_port = free_port();
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let mut cmd = Command::new(bin("ackemu-apiserver", "ackemu-apiserver")?);
        cmd.arg(format!("--secure-listen=127.0.0.1:{api_port}"))
            .arg(format!("--store-endpoints={endpoint}"))
            .arg(format!("--pki-dir={}", dir.path().join("pki").display()))
            .arg(format!("--admin-kubeconfig={}", kubeconfig.display()));
        let apiserver = Proc::spawn(cmd, &dir.path().join("apiserver.log"));
        let clock = Clock::real();
        let tasks = Tasks::new(clock.clone());
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
        let client = Client::new(cfg, clock.clone(), tasks.clone())?;
        let c = client.clone();
        eventually("the API server to answer", || {
            let c = c.clone();
            async move {
                Ok(c.request("GET", "/api/v1/namespaces/kube-public", None)
                    .await
                    .ok()
                    .map(|_| ()))
            }
        })
        .await?;
        Ok(ControlPlane {
            dir,
            url: format!("https://127.0.0.1:{api_port}"),
            client,
            clock,
            tasks,
            _etcd: etcd,
            _apiserver: apiserver,
            cm: None,
        })
    }

    pub fn pki(&self, f: &str) -> PathBuf {
        self.dir.path().join("pki").join(f)
    }

    /// The controller-manager binary with the bootstrap controllers.
    pub fn start_controller_manager(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(bin(
            "ackemu-controller-manager",
            "ackemu-controller-manager",
        )?);
        cmd.arg("--kubeconfig")
            .arg(self.dir.path().join("admin.kubeconfig"))
            .arg("--controllers=bootstrapsigner,tokencleaner,csrapproving,nodeipam")
            .arg("--allocate-node-cidrs")
            .arg("--cluster-cidr=172.16.0.0/16")
            .arg("--leader-elect=false")
            .arg("--cluster-signing-cert-file")
            .arg(self.pki("ca.crt"))
            .arg("--cluster-signing-key-file")
            .arg(self.pki("ca.key"));
        self.cm = Some(Proc::spawn(
            cmd,
            &self.dir.path().join("controller-manager.log"),
        ));
        Ok(())
    }

    pub fn log(&self, f: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default()
    }

    /// POST `obj` to `path` with the admin client.
    pub async fn create(&self, path: &str, obj: serde_json::Value) -> anyhow::Result<()> {
        self.client
            .request(
                "POST",
                path,
                Some(("application/json", obj.to_string().into_bytes())),
            )
            .await
            .with_context(|| format!("POST {path}"))?;
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.tasks.token().cancel();
    }
}
