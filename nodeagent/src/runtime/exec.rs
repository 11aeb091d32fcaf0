//! Streaming exec: a `runc exec` process whose stdio the runtime pipes to
//! the caller — the process runs inside the container's network and mount
//! namespaces (runc joins them), its stdout and stderr come back as
//! messages, stdin goes in, and the last message is the exit code.
//!
//! Unlike `ExecSync` the container's lock is held only while the process
//! starts: an interactive session must not stall `ContainerStatus`.

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

impl Runtime {
    /// Start `start.cmd` in the container and stream its stdio.
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
        if start.tty {
            return Err(RuntimeError::InvalidArgument(
                "exec with a tty is not supported by this runtime: run without -t".into(),
            ));
        }
        let c = self.container(&start.container_id)?;
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
            args.extend(start.cmd.iter().cloned());
            let mut cmd = self.runc_command(&args);
            cmd.stdin(if start.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
            cmd.spawn()
                .map_err(|e| RuntimeError::Internal(format!("starting runc exec: {e}")))?
        };
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
        if let Some(mut stdin) = child.stdin.take() {
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
