//! A real cluster of the built `ackemu-store` binary on loopback ports, and
//! the real `etcdctl` (ETCDCTL_API=3) to drive it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use ackemu_base::clock::Clock;

use anyhow::{Context as _, Result, bail};

pub const BIN: &str = env!("CARGO_BIN_EXE_ackemu-store");

/// Polls `f` until it returns `Some`, or fails after `deadline`.
pub fn poll<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let clock = Clock::real();
    let start = clock.now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if clock.now().saturating_duration_since(start) > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` distinct free ports (the listeners are held until all are chosen).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// lib/base's admin port (FaultService: failpoints at run time).
    pub admin_port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    pub extra: Vec<String>,
    pub state: &'static str,
    pub initial_cluster: String,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The endpoint etcdctl is given, scheme-less (etcdctl's own default
    /// form); `maintenance::etcdctl_takes_endpoint_urls` covers the
    /// `http://` form.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut cmd = Command::new(BIN);
        cmd.args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &self.client_url()])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", self.state])
            .args(["--admin-listen", &format!("127.0.0.1:{}", self.admin_port)])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(cmd.spawn().context("spawning ackemu-store")?);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal by name (`STOP`, `CONT`) with kill(1).
    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid().context("member is not running")?;
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()?;
        anyhow::ensure!(st.success(), "kill -{sig} {pid} failed");
        Ok(())
    }

    /// Sets (`Some(action)`) or clears a failpoint through the admin port.
    pub async fn failpoint(&self, name: &str, action: Option<&str>) -> Result<()> {
        use ackemu_proto::ackemu::fault::v1::fault_service_client::FaultServiceClient;
        use ackemu_proto::ackemu::fault::v1::{ClearFailpointRequest, SetFailpointRequest};
        let mut c =
            FaultServiceClient::connect(format!("http://127.0.0.1:{}", self.admin_port)).await?;
        match action {
            Some(a) => {
                c.set_failpoint(SetFailpointRequest {
                    name: name.into(),
                    action: a.into(),
                })
                .await?;
            }
            None => {
                c.clear_failpoint(ClearFailpointRequest { name: name.into() })
                    .await?;
            }
        }
        Ok(())
    }

    /// SIGKILL, like `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
}

impl Cluster {
    /// Starts `n` members and waits until they agree on a leader.
    pub fn start(n: usize, extra: &[&str]) -> Result<Cluster> {
        Self::start_each(n, |_| extra.iter().map(|s| s.to_string()).collect())
    }

    /// Like `start`, with flags chosen per member (by index).
    pub fn start_each(n: usize, extra: impl Fn(usize) -> Vec<String>) -> Result<Cluster> {
        // A port chosen here can be taken by a concurrently running test
        // before the member binds it: retry with fresh ports then.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(n, &extra) {
                Ok(c) => return Ok(c),
                Err((e, port_clash)) if port_clash && attempt < 3 => {
                    eprintln!("retrying cluster start after a port clash: {e:#}");
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    fn try_start(
        n: usize,
        extra: &impl Fn(usize) -> Vec<String>,
    ) -> Result<Cluster, (anyhow::Error, bool)> {
        let dir = tempfile::tempdir().map_err(|e| (e.into(), false))?;
        let ports = free_ports(3 * n);
        let mut members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("s{}", i + 1),
                client_port: ports[3 * i],
                peer_port: ports[3 * i + 1],
                admin_port: ports[3 * i + 2],
                data_dir: dir.path().join(format!("s{}", i + 1)),
                log: dir.path().join(format!("s{}.log", i + 1)),
                child: None,
                extra: extra(i),
                state: "new",
                initial_cluster: String::new(),
            })
            .collect();
        let initial: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect();
        for m in &mut members {
            m.initial_cluster = initial.join(",");
            m.start().map_err(|e| (e, false))?;
        }
        let c = Cluster { dir, members };
        match c.wait_healthy() {
            Ok(()) => Ok(c),
            Err(e) => {
                let clash = c.logs_tail().contains("Address already in use");
                Err((e, clash))
            }
        }
    }

    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.endpoint())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs etcdctl against every running member.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_at(&self.endpoints(), args)
    }

    pub fn ctl_at(&self, endpoints: &str, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                endpoints,
                "--command-timeout",
                "10s",
                "--dial-timeout",
                "3s",
            ])
            .args(args)
            .output()
            .expect("running etcdctl (Debian package etcd-client)")
    }

    /// etcdctl that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ctl(args);
        if !out.status.success() {
            bail!(
                "etcdctl {args:?} failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.logs_tail()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// etcdctl that must fail; returns its stderr.
    pub fn err(&self, args: &[&str]) -> Result<String> {
        let out = self.ctl(args);
        if out.status.success() {
            bail!(
                "etcdctl {args:?} succeeded unexpectedly: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    pub fn wait_healthy(&self) -> Result<()> {
        poll(
            "a leader and every member healthy",
            Duration::from_secs(30),
            || {
                let out = self.ctl(&["endpoint", "health"]);
                out.status.success().then_some(())
            },
        )
        .with_context(|| self.logs_tail())
    }

    /// (member index, member id hex) of the current leader, from endpoint status.
    pub fn leader(&self) -> Result<usize> {
        poll("a leader", Duration::from_secs(20), || {
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                let out = self.ctl_at(&m.endpoint(), &["endpoint", "status", "-w", "json"]);
                if !out.status.success() {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                let st = &v[0]["Status"];
                let leader = st["leader"].as_u64()?;
                let me = st["header"]["member_id"].as_u64()?;
                if leader != 0 && leader == me {
                    return Some(i);
                }
            }
            None
        })
    }

    pub fn logs_tail(&self) -> String {
        let mut s = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            s.push_str(&format!(
                "--- {} log tail ---\n{}\n",
                m.name,
                tail.join("\n")
            ));
        }
        s
    }
}

/// `etcdctl get --print-value-only` style helper.
pub fn values(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.is_empty()).collect()
}

/// A running `etcdctl watch`, its output lines collected by a reader thread.
pub struct WatchProc {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl WatchProc {
    pub fn start(c: &Cluster, args: &[&str]) -> Result<WatchProc> {
        use std::io::BufRead as _;
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &c.endpoints(), "watch"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(4096);
        let tasks = ackemu_base::tasks::Tasks::new(Clock::real());
        for (name, stream) in [
            (
                "watch-stdout",
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            ),
            (
                "watch-stderr",
                Box::new(child.stderr.take().expect("stderr")) as Box<dyn std::io::Read + Send>,
            ),
        ] {
            let tx = tx.clone();
            tasks.spawn_thread(name, move || {
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(WatchProc {
            child,
            lines: rx,
            seen: Vec::new(),
        })
    }

    /// Waits until the output contains every needle in order (or times out).
    pub fn expect(&mut self, needles: &[&str], deadline: Duration) -> Result<()> {
        let clock = Clock::real();
        let start = clock.now();
        loop {
            let mut idx = 0;
            for l in &self.seen {
                if idx < needles.len() && l.contains(needles[idx]) {
                    idx += 1;
                }
            }
            if idx == needles.len() {
                return Ok(());
            }
            let left = deadline
                .checked_sub(clock.now().saturating_duration_since(start))
                .unwrap_or_default();
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(l) => self.seen.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => bail!("watch output {:?} lacks {needles:?}", self.seen),
            }
        }
    }

    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}

impl Drop for WatchProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
