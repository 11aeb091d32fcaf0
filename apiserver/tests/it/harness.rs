//! Test harness: a real etcd on free loopback ports, an in-process API
//! server on it, and the real kubectl binaries.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ackemu_apiserver::{Config, Server};
use ackemu_base::Env;
use ackemu_base::clock::Clock;
use anyhow::{Context, bail};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// A bounded wait for a condition (no sleeps as synchronisation: the
/// condition is polled, and the deadline only bounds failure).
pub async fn eventually<F, Fut, T>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let clock = Clock::real();
    let deadline = clock.now() + Duration::from_secs(30);
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
        clock.sleep(Duration::from_millis(50)).await;
    }
}

/// Which store the API server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A real etcd (Debian `etcd-server`), one member.
    Etcd,
    /// Three `ackemu-store` members (Raft), the binary built on demand.
    Store,
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

/// The `ackemu-store` binary, built when this crate's tests run alone.
fn store_bin() -> anyhow::Result<PathBuf> {
    let bin = target_dir().join("ackemu-store");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let target = target_dir().parent().context("target dir")?.to_path_buf();
        let st = Command::new(cargo)
            .args([
                "build",
                "-p",
                "ackemu-store",
                "--bin",
                "ackemu-store",
                "--manifest-path",
                manifest,
            ])
            .env("CARGO_TARGET_DIR", target)
            .status()
            .context("building ackemu-store")?;
        if !st.success() {
            bail!("building ackemu-store failed");
        }
    }
    Ok(bin)
}

/// A store speaking the etcd v3 API in a temporary directory: a real etcd
/// (Debian `etcd-server`) or a 3-member `ackemu-store`.
pub struct Etcd {
    children: Vec<Child>,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub async fn start() -> anyhow::Result<Etcd> {
        // Free ports are picked then released, so another test may grab the
        // same one first; retry until the etcd answering is ours (its unique
        // member name) and still running.
        let mut last = None;
        for _ in 0..5 {
            match Self::try_start().await {
                Ok(e) => return Ok(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    async fn try_start() -> anyhow::Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let client = free_port();
        let peer = free_port();
        let endpoint = format!("127.0.0.1:{client}");
        let name = format!("t{}", uuid::Uuid::new_v4().simple());
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--name", &name])
            .args(["--listen-client-urls", &format!("http://{endpoint}")])
            .args(["--advertise-client-urls", &format!("http://{endpoint}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args([
                "--initial-cluster",
                &format!("{name}=http://127.0.0.1:{peer}"),
            ])
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting etcd (Debian package etcd-server)")?;
        let mut etcd = Etcd {
            children: vec![child],
            endpoint,
            _dir: dir,
        };
        let ep = etcd.endpoint.clone();
        let mut attempts = 0;
        loop {
            if let Ok(Some(status)) = etcd.children[0].try_wait() {
                anyhow::bail!("etcd on {ep} exited: {status}");
            }
            let out = tokio::process::Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &ep, "member", "list"])
                .output()
                .await?;
            let listed = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                if listed.contains(&name) {
                    return Ok(etcd);
                }
                anyhow::bail!("another etcd answers on {ep}");
            }
            attempts += 1;
            anyhow::ensure!(attempts < 200, "etcd on {ep} did not become ready");
            Clock::real().sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the store `backend` names.
    pub async fn start_backend(backend: Backend) -> anyhow::Result<Etcd> {
        match backend {
            Backend::Etcd => Self::start().await,
            Backend::Store => {
                let mut last = None;
                for _ in 0..5 {
                    match Self::try_start_store(3).await {
                        Ok(e) => return Ok(e),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| anyhow::anyhow!("ackemu-store did not start")))
            }
        }
    }

    /// `members` ackemu-store processes forming one Raft cluster; ready
    /// when every member answers `etcdctl endpoint health` (a leader exists).
    async fn try_start_store(members: usize) -> anyhow::Result<Etcd> {
        let bin = store_bin()?;
        let dir = tempfile::tempdir()?;
        let token = format!("t{}", uuid::Uuid::new_v4().simple());
        let ports: Vec<(u16, u16)> = (0..members).map(|_| (free_port(), free_port())).collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("s{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut children = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let child = Command::new(&bin)
                .args(["--name", &format!("s{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("s{i}")))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-token", &token])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting ackemu-store")?;
            children.push(child);
        }
        let endpoints: Vec<String> = ports
            .iter()
            .map(|(c, _)| format!("127.0.0.1:{c}"))
            .collect();
        let mut store = Etcd {
            children,
            endpoint: endpoints[0].clone(),
            _dir: dir,
        };
        let mut attempts = 0;
        loop {
            for c in &mut store.children {
                if let Ok(Some(status)) = c.try_wait() {
                    anyhow::bail!("an ackemu-store member exited: {status}");
                }
            }
            let out = tokio::process::Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &endpoints.join(","), "endpoint", "health"])
                .output()
                .await?;
            if out.status.success() {
                return Ok(store);
            }
            attempts += 1;
            anyhow::ensure!(
                attempts < 400,
                "ackemu-store on {endpoints:?} did not become healthy"
            );
            // Pacing between polls, not a synchronisation point.
            Clock::real().sleep(Duration::from_millis(50)).await;
        }
    }

    /// `etcdctl get --prefix --keys-only` (what an operator would look at).
    pub fn keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &self.endpoint,
                "get",
                "--prefix",
                "--keys-only",
                prefix,
            ])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An API server on a real etcd.
pub struct Cluster {
    pub etcd: Etcd,
    pub server: Server,
    pub env: Env,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start() -> anyhow::Result<Cluster> {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> anyhow::Result<Cluster> {
        Self::start_on(Backend::Etcd, tune).await
    }

    /// An API server on the given store.
    pub async fn start_on(
        backend: Backend,
        tune: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Cluster> {
        let etcd = Etcd::start_backend(backend).await?;
        let dir = tempfile::tempdir()?;
        let mut config = Config::local(vec![etcd.endpoint.clone()], dir.path().join("pki"));
        tune(&mut config);
        let env = Env::for_test(Clock::real());
        let server = ackemu_apiserver::start(config, &env).await?;
        Ok(Cluster {
            etcd,
            server,
            env,
            dir,
        })
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.server
            .admin_kubeconfig
            .clone()
            .expect("admin kubeconfig written")
    }

    pub fn kubectl(&self, version: &str) -> Kubectl {
        Kubectl {
            bin: kubectl_bin(version),
            kubeconfig: self.kubeconfig(),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.env.tasks.token().cancel();
    }
}

/// The versioned kubectl binaries beside the `kubectl` dispatcher.
pub fn kubectl_bin(version: &str) -> PathBuf {
    let which = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .expect("sh");
    let path = PathBuf::from(String::from_utf8_lossy(&which.stdout).trim());
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/usr/bin"));
    let bin = dir.join(format!("kubectl.{version}"));
    assert!(
        bin.exists(),
        "kubectl.{version} not found beside {}",
        path.display()
    );
    bin
}

pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn with_kubeconfig(&self, kubeconfig: &Path) -> Kubectl {
        Kubectl {
            bin: self.bin.clone(),
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    /// Runs kubectl with `args`, feeding `stdin`.
    pub async fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        use tokio::io::AsyncWriteExt as _;
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.env(
            "HOME",
            self.kubeconfig.parent().unwrap_or(Path::new("/tmp")),
        );
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running {}", self.bin.display()))?;
        let mut input = child.stdin.take().context("stdin")?;
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).await?;
        }
        drop(input);
        let out = child.wait_with_output().await?;
        Ok(Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.run_stdin(args, None).await
    }

    /// Runs and requires success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args).await?;
        if !out.ok {
            bail!("kubectl {args:?} failed: {}{}", out.stderr, out.stdout);
        }
        Ok(out.stdout)
    }

    pub async fn ok_stdin(&self, args: &[&str], stdin: &str) -> anyhow::Result<String> {
        let out = self.run_stdin(args, Some(stdin)).await?;
        if !out.ok {
            bail!("kubectl {args:?} failed: {}{}", out.stderr, out.stdout);
        }
        Ok(out.stdout)
    }

    /// Runs and requires failure; returns stderr.
    pub async fn fails(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args).await?;
        if out.ok {
            bail!("kubectl {args:?} unexpectedly succeeded: {}", out.stdout);
        }
        Ok(out.stderr)
    }
}
