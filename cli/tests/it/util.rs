use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Duration;

use libtest_mimic::Failed;

pub type TestResult = Result<(), Failed>;

/// Run an async test body on a fresh runtime.
pub fn run(f: impl Future<Output = TestResult>) -> TestResult {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Fail with a message.
pub fn fail(msg: impl Into<String>) -> Failed {
    Failed::from(msg.into())
}

/// Upper bound for waiting on a child's answer. Not a timing assertion: a
/// healthy child answers in microseconds; this only keeps a broken one from
/// hanging CI.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A child process started from this test binary in child mode.
pub struct ChildProc {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    pub admin: String,
    pub tls: String,
}

impl ChildProc {
    pub fn start(extra_env: &[(&str, String)]) -> Result<ChildProc, Failed> {
        let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
        let mut cmd = Command::new(exe);
        cmd.env(crate::child::ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("spawning child: {e}")))?;
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = sync_channel(64);
        std::thread::Builder::new()
            .name("child-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .expect("reader thread");
        let mut p = ChildProc {
            child,
            stdin,
            lines: rx,
            admin: String::new(),
            tls: String::new(),
        };
        p.admin = p.expect_prefix("admin ")?;
        p.tls = p.expect_prefix("tls ")?;
        Ok(p)
    }

    pub fn next_line(&self) -> Result<String, Failed> {
        self.lines
            .recv_timeout(DEADLINE)
            .map_err(|_| fail("child produced no output (exited or stuck)"))
    }

    fn expect_prefix(&self, prefix: &str) -> Result<String, Failed> {
        let l = self.next_line()?;
        l.strip_prefix(prefix)
            .map(str::to_string)
            .ok_or_else(|| fail(format!("expected {prefix:?}..., child said {l:?}")))
    }

    pub fn send(&mut self, cmd: &str) -> Result<(), Failed> {
        writeln!(self.stdin, "{cmd}").map_err(|e| fail(format!("writing to child: {e}")))?;
        self.stdin.flush().map_err(|e| fail(e.to_string()))
    }

    pub fn ask(&mut self, cmd: &str) -> Result<String, Failed> {
        self.send(cmd)?;
        self.next_line()
    }

    /// Whether a line is already waiting (non-blocking).
    pub fn try_line(&self) -> Option<String> {
        self.lines.try_recv().ok()
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the real `ackemu` binary; returns (success, stdout, stderr).
pub fn ackemu(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ackemu"))
        .args(args)
        .output()
        .expect("running ackemu");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ackemu …` that must succeed; returns stdout.
pub fn ackemu_ok(args: &[&str]) -> Result<String, Failed> {
    let (ok, out, err) = ackemu(args);
    if ok {
        Ok(out)
    } else {
        Err(fail(format!("ackemu {args:?} failed: {err}")))
    }
}

/// A plain HTTP/1.1 GET against `addr`; returns (status, body).
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String), Failed> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(format!("connect {addr}: {e}")))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| fail(e.to_string()))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail("malformed http response"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail(format!("no status in {head:?}")))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
