//! Helpers: processes killed on drop, namespaces removed on drop, polling
//! with a bounded deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ackemu_base::clock::Clock;

pub const BIN: &str = env!("CARGO_BIN_EXE_ackemu-node");

/// How long any condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// `true` when root and netns work; otherwise prints `skipped:`.
pub fn can_netns(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: {test}: needs root");
        return false;
    }
    let probe = netns_name("probe");
    let ok = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let _ = Command::new("ip").args(["netns", "del", &probe]).output();
    if !ok {
        println!("skipped: {test}: cannot create network namespaces (ip netns add failed)");
    }
    ok
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique, prefixed namespace name.
pub fn netns_name(what: &str) -> String {
    format!(
        "ackemu-test-{}-{}-{what}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A named namespace deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(what: &str) -> Netns {
        let name = netns_name(what);
        sh(&["ip", "netns", "add", &name]);
        sh(&[
            "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
        ]);
        Netns { name }
    }
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }
    /// `ip …` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["ip", "netns", "exec", &self.name, "ip"];
        a.extend_from_slice(args);
        String::from_utf8_lossy(&sh(&a).stdout).into_owned()
    }
    /// Command prefix running a binary inside the namespace.
    pub fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()));
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn list_netns() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Run a command that must succeed.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let f = std::fs::File::create(log).expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone().expect("dup")))
            .stderr(Stdio::from(f));
        Proc {
            child: cmd.spawn().expect("spawn"),
            log: log.to_path_buf(),
        }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// SIGTERM and wait (bounded), SIGKILL after.
    pub async fn terminate(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let done = eventually("process exits after SIGTERM", || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        })
        .await;
        if !done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `cond` until it holds or [`DEADLINE`] passes; returns whether it held.
pub async fn eventually(_what: &str, mut cond: impl FnMut() -> bool) -> bool {
    let clock = Clock::real();
    let start = clock.now();
    loop {
        if cond() {
            return true;
        }
        if clock.now().saturating_duration_since(start) > DEADLINE {
            return false;
        }
        clock.sleep(Duration::from_millis(50)).await;
    }
}

/// Like [`eventually`] but panics with `what` on timeout.
pub async fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        eventually(what, cond).await,
        "timed out waiting for: {what}"
    );
}

/// Wait until a unix socket accepts connections.
pub async fn wait_socket(path: &Path) {
    let p = path.to_path_buf();
    wait_for(&format!("socket {}", p.display()), || {
        std::os::unix::net::UnixStream::connect(&p).is_ok()
    })
    .await;
}

/// Run `ackemu-node <args>` to completion.
pub fn node(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run ackemu-node")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
