//! Starting, finding and stopping the cluster's daemons.
//!
//! Daemons run detached (own process group, output appended to
//! `logs/<name>.log`), so `ackemu up` can return; their pids live in the
//! cluster state file, which `status` and `down` read.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ackemu_base::clock::Clock;
use anyhow::Context as _;

/// Where the sibling binaries (`ackemu-store`, …) are: next to `ackemu`.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the ackemu binary")?;
    let dir = exe.parent().context("ackemu binary has no directory")?;
    // Test binaries live in target/<profile>/deps; the binaries one up.
    if dir.ends_with("deps") {
        return Ok(dir.parent().unwrap_or(dir).to_path_buf());
    }
    Ok(dir.to_path_buf())
}

/// The path of component binary `name`, or a clear error.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let p = bin_dir()?.join(name);
    if !p.exists() {
        anyhow::bail!(
            "{} not found next to ackemu: build the workspace first (cargo build --workspace)",
            p.display()
        );
    }
    Ok(p)
}

/// Start `bin args…` detached, logging to `log`. Returns its pid.
pub fn spawn(bin: &Path, args: &[String], log: &Path) -> anyhow::Result<u32> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(child.id())
}

/// Whether `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the field after the parenthesised command name
            let state = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Send `sig` to `pid` (via kill(1), keeping this crate free of unsafe).
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Send `sig` to the process group `pgid` leads (a supervised component:
/// its supervisor and the component).
pub fn signal_group(pgid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args([format!("-{sig}"), "--".to_owned(), format!("-{pgid}")])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `sig` to `pid`, or to the group it leads.
pub fn send(pid: u32, sig: &str, group: bool) -> bool {
    if group {
        signal_group(pid, sig)
    } else {
        signal(pid, sig)
    }
}

/// SIGTERM, wait up to `grace` (real time), then SIGKILL (to the process,
/// or with `group` to the group it leads). Returns whether the process is
/// gone.
pub async fn stop(pid: u32, grace: Duration, group: bool) -> bool {
    if !alive(pid) {
        return true;
    }
    send(pid, "TERM", group);
    let clock = Clock::real();
    let deadline = clock.now() + grace;
    while clock.now() < deadline {
        if !alive(pid) {
            return true;
        }
        clock.sleep(Duration::from_millis(50)).await;
    }
    send(pid, "KILL", group);
    let deadline = clock.now() + Duration::from_secs(5);
    while clock.now() < deadline {
        if !alive(pid) {
            return true;
        }
        clock.sleep(Duration::from_millis(20)).await;
    }
    !alive(pid)
}

/// GET `http://{addr}{path}` on an admin port; the status code.
pub async fn http_status(addr: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Wait (bounded, real time) until the admin port at `addr` answers
/// `/readyz` with 200, failing early if `pid` dies.
pub async fn wait_ready(
    name: &str,
    pid: u32,
    addr: &str,
    limit: Duration,
    log: &Path,
) -> anyhow::Result<()> {
    let clock = Clock::real();
    let deadline = clock.now() + limit;
    loop {
        if http_status(addr, "/readyz").await == Some(200) {
            return Ok(());
        }
        if !alive(pid) {
            anyhow::bail!(
                "{name} exited during start-up; see {}:\n{}",
                log.display(),
                tail(log, 15)
            );
        }
        if clock.now() > deadline {
            anyhow::bail!(
                "{name} not ready after {limit:?}; see {}:\n{}",
                log.display(),
                tail(log, 15)
            );
        }
        clock.sleep(Duration::from_millis(50)).await;
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
