//! A real etcd and a real `ackemu-apiserver` process on free loopback
//! ports (the API server binary from the target directory, built on
//! demand), and helpers to run workload programs against them.
// Shared by the test modules; not every module uses every helper.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::client::Client;
use ackemu_testkit::{ApiServer, Etcd};
use anyhow::Context;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ackemu-workload");

pub use ackemu_testkit::{Proc, free_port};

/// Polls `f` until it yields a value; the deadline only bounds failure.
pub async fn eventually<F, Fut, T>(what: &str, f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    ackemu_testkit::eventually_within(what, Duration::from_secs(90), f).await
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
    _apiserver: ApiServer,
    _etcd: Etcd,
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
        let etcd = Etcd::start(dir.path()).await?;
        let tasks = Tasks::new(Clock::real());
        let apiserver = ApiServer::start(dir.path(), &etcd.endpoint, &[], &tasks).await?;
        Ok(Cluster {
            client: apiserver.client.clone(),
            kubeconfig: apiserver.kubeconfig.clone(),
            api_port: apiserver.api_port,
            admin_port: apiserver.admin_port,
            ca_pem: apiserver.ca_pem.clone(),
            _apiserver: apiserver,
            _etcd: etcd,
            dir,
            tasks,
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
