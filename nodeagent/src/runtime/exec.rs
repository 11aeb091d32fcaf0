//! Streaming exec: a `runc exec` process whose stdio the runtime pipes to
//! the caller — the process runs inside the container's network and mount
//! namespaces (runc joins them), its stdout and stderr come back as
//! messages, stdin goes in, and the last message is the exit code.
//!
//! Unlike `ExecSync` the container's lock is held only while the process
//! starts: an interactive session must not stall `ContainerStatus`. With
//! `tty` the process runs under `setsid -w -c` on a pty's slave side (its
//! controlling terminal); the master is the session's stdin and stdout, and
//! resizes are applied with `stty -F <slave>`.

use std::process::Stdio;

use ackemu_proto::ackemu::node::v1 as pb;
use futures::{Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use super::{Runtime, RuntimeError, short};

/// What the caller sends after `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes for the process' stdin.
    Stdin(Vec<u8>),
    /// The caller's stdin ended.
    CloseStdin,
    /// A terminal resize (width, height).
    Resize(u32, u32),
}

/// Output messages buffered per session.
const OUTPUT_QUEUE: usize = 32;

async fn pump(
    mut r: impl AsyncRead + Unpin,
    tx: mpsc::Sender<pb::ExecResponse>,
    wrap: fn(Vec<u8>) -> pb::exec_response::Msg,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let m = pb::ExecResponse {
                    msg: Some(wrap(buf[..n].to_vec())),
                };
                if tx.send(m).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A pseudo-terminal for `tty` sessions.
struct Pty {
    master: std::fs::File,
    slave: std::fs::File,
    slave_path: std::path::PathBuf,
}

impl Pty {
    fn open() -> Result<Pty, RuntimeError> {
        let p = nix::pty::openpty(None, None)
            .map_err(|e| RuntimeError::Internal(format!("openpty: {e}")))?;
        let slave_path = nix::unistd::ttyname(&p.slave)
            .map_err(|e| RuntimeError::Internal(format!("ttyname of the pty: {e}")))?;
        Ok(Pty {
            master: std::fs::File::from(p.master),
            slave: std::fs::File::from(p.slave),
            slave_path,
        })
    }
}

impl Runtime {
    /// Start `start.cmd` in the container and stream its stdio; with `tty`
    /// the process gets a pseudo-terminal as its controlling terminal
    /// (stdout and stderr are one stream, resizes apply to it).
    pub async fn exec_stream(
        &self,
        start: pb::ExecStart,
        mut input: impl Stream<Item = Input> + Send + Unpin + 'static,
    ) -> Result<mpsc::Receiver<pb::ExecResponse>, RuntimeError> {
        if start.cmd.is_empty() {
            return Err(RuntimeError::InvalidArgument(
                "Exec with an empty cmd".into(),
            ));
        }
        let c = self.container(&start.container_id)?;
        let pty = if start.tty { Some(Pty::open()?) } else { None };
        let mut child = {
            let _g = self.lock_container(&c, "Exec").await;
            if c.data.lock().state != pb::ContainerState::ContainerRunning {
                return Err(RuntimeError::FailedPrecondition(format!(
                    "container {} is not running",
                    start.container_id
                )));
            }
            let mut args = vec![
                "exec".to_string(),
                start.container_id.clone(),
                "--".to_string(),
            ];
            if start.tty {
                // A new session whose controlling terminal is the pty.
                args.extend(["setsid".into(), "-w".into(), "-c".into()]);
            }
            args.extend(start.cmd.iter().cloned());
            let mut cmd = self.runc_command(&args);
            cmd.kill_on_drop(true);
            if let Some(p) = &pty {
                let io = |what| {
                    move |e: std::io::Error| {
                        RuntimeError::Internal(format!("duplicating the pty for {what}: {e}"))
                    }
                };
                cmd.stdin(Stdio::from(p.slave.try_clone().map_err(io("stdin"))?))
                    .stdout(Stdio::from(p.slave.try_clone().map_err(io("stdout"))?))
                    .stderr(Stdio::from(p.slave.try_clone().map_err(io("stderr"))?));
            } else {
                cmd.stdin(if start.stdin {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            }
            cmd.spawn()
                .map_err(|e| RuntimeError::Internal(format!("starting runc exec: {e}")))?
        };
        // Only the child keeps the terminal's slave side open, so reading
        // the master ends (EIO) when the session does.
        let pty = pty.map(|p| (p.master, p.slave_path));
        let id = short(&start.container_id).to_string();
        let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
        let stdout = child.stdout.take().map(|out| {
            self.tasks.spawn(
                format!("runtime/exec {id} stdout"),
                pump(out, tx.clone(), pb::exec_response::Msg::Stdout),
            )
        });
        let stderr = child.stderr.take().map(|err| {
            self.tasks.spawn(
                format!("runtime/exec {id} stderr"),
                pump(err, tx.clone(), pb::exec_response::Msg::Stderr),
            )
        });
        let stdout = match (&pty, stdout) {
            (Some((master, _)), _) => {
                let r = tokio::fs::File::from_std(master.try_clone().map_err(|e| {
                    RuntimeError::Internal(format!("duplicating the pty master: {e}"))
                })?);
                Some(self.tasks.spawn(
                    format!("runtime/exec {id} tty"),
                    pump(r, tx.clone(), pb::exec_response::Msg::Stdout),
                ))
            }
            (None, s) => s,
        };
        if let Some((master, slave_path)) = pty {
            let mut w = tokio::fs::File::from_std(master);
            self.tasks
                .spawn(format!("runtime/exec {id} tty stdin"), async move {
                    while let Some(i) = input.next().await {
                        match i {
                            Input::Stdin(b) => {
                                if w.write_all(&b).await.is_err() || w.flush().await.is_err() {
                                    return;
                                }
                            }
                            Input::CloseStdin => return,
                            Input::Resize(width, height) => {
                                let _ = tokio::process::Command::new("stty")
                                    .arg("-F")
                                    .arg(&slave_path)
                                    .args(["cols", &width.to_string(), "rows", &height.to_string()])
                                    .status()
                                    .await;
                            }
                        }
                    }
                });
        } else if let Some(mut stdin) = child.stdin.take() {
            self.tasks
                .spawn(format!("runtime/exec {id} stdin"), async move {
                    while let Some(i) = input.next().await {
                        match i {
                            Input::Stdin(b) => {
                                if stdin.write_all(&b).await.is_err() {
                                    return;
                                }
                            }
                            Input::CloseStdin => return,
                            Input::Resize(..) => {}
                        }
                    }
                });
        }
        let token = self.tasks.token();
        self.tasks
            .spawn(format!("runtime/exec {id} wait"), async move {
                let status = tokio::select! {
                    s = child.wait() => s,
                    () = token.cancelled() => return,
                };
                for h in [stdout, stderr].into_iter().flatten() {
                    let _ = h.await;
                }
                use std::os::unix::process::ExitStatusExt as _;
                let code = match status {
                    Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
                    Err(_) => 128,
                };
                let _ = tx
                    .send(pb::ExecResponse {
                        msg: Some(pb::exec_response::Msg::ExitCode(code)),
                    })
                    .await;
            });
        Ok(rx)
    }
}
