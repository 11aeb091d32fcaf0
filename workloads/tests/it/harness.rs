//! A real etcd and a real `ackemu-apiserver` process on free loopback
//! ports (the API server binary from the target directory, built on
//! demand), and helpers to run workload programs against them.
// Shared by the test modules; not every module uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::client::{Client, ClientConfig};
use anyhow::{Context, bail};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ackemu-workload");

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
    let deadline = clock.now() + Duration::from_secs(90);
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

/// A child process killed on drop.
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
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf()
}

/// The API server binary, built on demand when this crate's tests run alone.
fn apiserver_bin() -> anyhow::Result<PathBuf> {
    let bin = target_dir().join("ackemu-apiserver");
    if !bin.exists() {
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
        if !st.success() {
            bail!("building ackemu-apiserver failed");
        }
    }
    Ok(bin)
}

/// `kubectl.1.33`, installed beside the `kubectl` dispatcher.
pub fn kubectl_bin() -> PathBuf {
    let which = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .expect("sh");
    let path = PathBuf::from(String::from_utf8_lossy(&which.stdout).trim());
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/usr/bin"))
        .join("kubectl.1.33")
}

/// etcd + the API server.
pub struct Cluster {
    _etcd: Proc,
    _apiserver: Proc,
    pub dir: tempfile::TempDir,
    pub tasks: Tasks,
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub api_port: u16,
    /// The API server's admin port (FaultService: clock offsets).
    pub admin_port: u16,
    pub ca_pem: String,
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
        let admin_port = free_port();
        let kubeconfig = dir.path().join("admin.kubeconfig");
        let log = std::fs::File::create(dir.path().join("apiserver.log"))?;
        let apiserver = Proc(
            Command::new(apiserver_bin()?)
                .arg(format!("--secure-listen=127.0.0.1:{api_port}"))
                .arg(format!("--admin-listen=127.0.0.1:{admin_port}"))
                .arg(format!("--store-endpoints={endpoint}"))
                .arg(format!("--pki-dir={}", dir.path().join("pki").display()))
                .arg(format!("--admin-kubeconfig={}", kubeconfig.display()))
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting ackemu-apiserver")?,
        );
        let tasks = Tasks::new(Clock::real());
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
        let ca_pem = cfg.ca_pem.clone();
        let client = Client::new(cfg, tasks.clock().clone(), tasks.clone())?;
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
        Ok(Cluster {
            _etcd: etcd,
            _apiserver: apiserver,
            dir,
            tasks,
            client,
            kubeconfig,
            api_port,
            admin_port,
            ca_pem,
        })
    }

    /// POST `obj` to `path` (a collection), as the admin.
    pub async fn create(&self, path: &str, obj: Value) -> anyhow::Result<Value> {
        self.client
            .request(
                "POST",
                path,
                Some(("application/json", obj.to_string().into_bytes())),
            )
            .await
            .with_context(|| format!("POST {path}"))
    }

    /// Apply a YAML/JSON manifest with the real kubectl.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(kubectl_bin())
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .expect("running kubectl.1.33")
    }

    /// A service-account credentials directory (token, ca.crt, namespace)
    /// for `ns/sa`, as the kubelet mounts it, and the env of a pod using it.
    pub async fn service_account(&self, ns: &str, sa: &str) -> anyhow::Result<ServiceAccountMount> {
        let _ = self
            .create(
                &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
                serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}),
            )
            .await;
        let tr = self
            .create(
                &format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"),
                serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 31536000}}),
            )
            .await?;
        let token = tr["status"]["token"].as_str().context("token")?.to_owned();
        let dir = self.dir.path().join(format!("sa-{ns}-{sa}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("token"), &token)?;
        std::fs::write(dir.join("ca.crt"), &self.ca_pem)?;
        std::fs::write(dir.join("namespace"), ns)?;
        Ok(ServiceAccountMount {
            dir,
            token,
            api_port: self.api_port,
        })
    }

    /// Set the API server's cluster clock offset through its FaultService.
    pub async fn set_clock_offset(&self, offset_ms: i64) -> anyhow::Result<()> {
        use ackemu_proto::ackemu::fault::v1 as pb;
        let mut c = pb::fault_service_client::FaultServiceClient::connect(format!(
            "http://127.0.0.1:{}",
            self.admin_port
        ))
        .await?;
        c.set_clock_offset(pb::SetClockOffsetRequest { offset_ms })
            .await?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.tasks.token().cancel();
    }
}

/// A pod's view of its service account.
pub struct ServiceAccountMount {
    pub dir: PathBuf,
    pub token: String,
    pub api_port: u16,
}

impl ServiceAccountMount {
    /// The environment a container with this mount gets.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
            ("KUBERNETES_SERVICE_PORT".into(), self.api_port.to_string()),
            (
                "ACKEMU_SERVICEACCOUNT_DIR".into(),
                self.dir.display().to_string(),
            ),
        ]
    }
}

/// Start `ackemu-workload <args>` with `env`, stdout and stderr appended to
/// `log`; returns the process.
pub fn spawn_program(args: &[&str], env: &[(String, String)], log: &Path) -> anyhow::Result<Proc> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut c = Command::new(BIN);
    c.args(args)
        .stdout(f.try_clone()?)
        .stderr(f)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    Ok(Proc(
        c.spawn().with_context(|| format!("spawning {args:?}"))?,
    ))
}

/// Wait until `log` contains `marker`; returns the matching line.
pub async fn log_line(log: &Path, marker: &str) -> anyhow::Result<String> {
    eventually(&format!("{marker:?} in {}", log.display()), || async {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        Ok(text.lines().find(|l| l.contains(marker)).map(str::to_owned))
    })
    .await
}

/// GET over plain HTTP with curl; (status, body).
pub async fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", url])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
}

/// `dig @127.0.0.1 -p <port> <args>`, stdout.
pub async fn dig(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("dig")
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .await
        .context("running dig (dnsutils)")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
