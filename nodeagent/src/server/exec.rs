//! `/exec/{ns}/{pod}/{container}` over WebSocket, the streaming protocol
//! of `k8s.io/apimachinery/pkg/util/httpstream/wsstream` with the
//! subprotocols `v5.channel.k8s.io` and `v4.channel.k8s.io`: every binary
//! message starts with its channel — 0 stdin, 1 stdout, 2 stderr, 3 the
//! final `metav1.Status` (Success, or Failure with reason
//! `NonZeroExitCode` and an `ExitCode` cause), 4 terminal resize (JSON
//! `{"Width":…,"Height":…}`); v5 adds 255, a close signal (`[255, 0]`
//! closes stdin). The process is the runtime's streaming `Exec`: a real
//! `runc exec` inside the container's namespaces.

use std::sync::Arc;

use ackemu_proto::ackemu::node::v1 as pb;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{AppState, find_pod, instances, query_pairs, text};

/// The subprotocols, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// Channels.
pub const STDIN: u8 = 0;
/// stdout.
pub const STDOUT: u8 = 1;
/// stderr.
pub const STDERR: u8 = 2;
/// The final status.
pub const ERROR: u8 = 3;
/// Terminal resize.
pub const RESIZE: u8 = 4;
/// v5 close signal.
pub const CLOSE: u8 = 255;

/// The status sent on channel 3 when the command exits with `code`.
pub fn exit_status(cmd: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            cmd.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The status sent when the command could not run.
pub fn error_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

fn flag(q: &[(String, String)], k: &str) -> bool {
    q.iter()
        .any(|(key, v)| key == k && matches!(v.as_str(), "1" | "true" | "True"))
}

pub(super) async fn handler(
    State(st): State<Arc<AppState>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let q = query_pairs(query.as_deref());
    let cmd: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let (stdin, stdout, stderr, tty) = (
        flag(&q, "stdin"),
        flag(&q, "stdout"),
        flag(&q, "stderr"),
        flag(&q, "tty"),
    );
    if !stdin && !stdout && !stderr {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr\n",
        );
    }
    if cmd.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container\n",
        );
    }
    if let Err(r) = find_pod(&st, &ns, &pod, &container) {
        return r;
    }
    let running = match instances(&st, &ns, &pod, &container).await {
        Ok(cs) => cs
            .into_iter()
            .find(|c| c.state == pb::ContainerState::ContainerRunning as i32),
        Err(r) => return r,
    };
    let Some(c) = running else {
        return text(
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})\n"),
        );
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => return text(StatusCode::BAD_REQUEST, "Upgrade request required\n"),
    };
    let start = pb::ExecStart {
        container_id: c.id,
        cmd,
        tty,
        stdin,
        stdout,
        stderr,
    };
    ws.protocols(PROTOCOLS).on_upgrade(move |socket| {
        let v5 = socket
            .protocol()
            .and_then(|p| p.to_str().ok())
            .is_some_and(|p| p == PROTOCOLS[0]);
        session(st, socket, v5, start)
    })
}

/// A close frame with 1000 (normal closure): client-go reads it as the
/// end of the streams; a close without a status is an error to it.
fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    }))
}

fn framed(channel: u8, data: &[u8]) -> Message {
    let mut b = Vec::with_capacity(data.len() + 1);
    b.push(channel);
    b.extend_from_slice(data);
    Message::Binary(b.into())
}

async fn session(st: Arc<AppState>, socket: WebSocket, v5: bool, start: pb::ExecStart) {
    let cmd = start.cmd.clone();
    let (want_out, want_err) = (start.stdout, start.stderr);
    let (mut sink, mut source) = socket.split();
    let (in_tx, in_rx) = mpsc::channel::<pb::ExecRequest>(16);
    let _ = in_tx
        .send(pb::ExecRequest {
            msg: Some(pb::exec_request::Msg::Start(start)),
        })
        .await;
    let resp = st
        .cri
        .clone()
        .exec(tokio_stream::wrappers::ReceiverStream::new(in_rx))
        .await;
    let mut out = match resp {
        Ok(r) => r.into_inner(),
        Err(e) => {
            let _ = sink
                .send(framed(
                    ERROR,
                    error_status(e.message()).to_string().as_bytes(),
                ))
                .await;
            let _ = sink.send(normal_close()).await;
            return;
        }
    };
    let reader = async {
        use pb::exec_request::Msg;
        while let Some(Ok(m)) = source.next().await {
            let msg = match m {
                Message::Binary(b) if !b.is_empty() => match b[0] {
                    STDIN => Msg::Stdin(b[1..].to_vec()),
                    RESIZE => {
                        let v: Value = serde_json::from_slice(&b[1..]).unwrap_or(Value::Null);
                        let dim = |k: &str| v[k].as_u64().unwrap_or(0) as u32;
                        Msg::Resize(pb::TerminalSize {
                            width: dim("Width"),
                            height: dim("Height"),
                        })
                    }
                    CLOSE if v5 && b.get(1) == Some(&STDIN) => Msg::CloseStdin(true),
                    _ => continue,
                },
                Message::Close(_) => Msg::CloseStdin(true),
                _ => continue,
            };
            let close = matches!(msg, Msg::CloseStdin(_));
            if in_tx
                .send(pb::ExecRequest { msg: Some(msg) })
                .await
                .is_err()
                || close
            {
                break;
            }
        }
        // Keep the request stream open until the process exits.
        std::future::pending::<()>().await;
    };
    let writer = async {
        use pb::exec_response::Msg;
        loop {
            let m = match out.message().await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    let _ = sink
                        .send(framed(
                            ERROR,
                            error_status("the runtime ended the exec stream without an exit code")
                                .to_string()
                                .as_bytes(),
                        ))
                        .await;
                    break;
                }
                Err(e) => {
                    let _ = sink
                        .send(framed(
                            ERROR,
                            error_status(e.message()).to_string().as_bytes(),
                        ))
                        .await;
                    break;
                }
            };
            let r = match m.msg {
                Some(Msg::Stdout(b)) if want_out => sink.send(framed(STDOUT, &b)).await,
                Some(Msg::Stderr(b)) if want_err => sink.send(framed(STDERR, &b)).await,
                Some(Msg::ExitCode(code)) => {
                    let _ = sink
                        .send(framed(
                            ERROR,
                            exit_status(&cmd, code).to_string().as_bytes(),
                        ))
                        .await;
                    break;
                }
                _ => Ok(()),
            };
            if r.is_err() {
                return;
            }
        }
        let _ = sink.send(normal_close()).await;
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_like_the_kubelets() {
        assert_eq!(
            exit_status(&["ls".into()], 0),
            json!({"metadata": {}, "status": "Success"})
        );
        let f = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(f["reason"], "NonZeroExitCode");
        assert_eq!(
            f["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert_eq!(
            f["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }
}
