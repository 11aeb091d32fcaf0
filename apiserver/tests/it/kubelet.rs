//! `kubectl logs`, `logs -f`, `exec` and `get --raw …/nodes/n/proxy/…`
//! through the API server to a fake kubelet: an HTTPS server in the test
//! that requires a client certificate from the cluster CA, serves
//! `/containerLogs/…`, a WebSocket `/exec/…` speaking the
//! `v5.channel.k8s.io` remote-command protocol, and `/stats/summary`,
//! registered as a Node whose InternalIP is 127.0.0.1. Nodes whose kubelet
//! refuses connections or never answers the handshake give the dial
//! errors of S05.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ackemu_apiserver::kubelet::{KubeletConfig, Kubelets, Location};
use ackemu_base::pki::{self, Ca, CertSpec, ClientAuth};
use ackemu_base::tasks::Tasks;
use anyhow::Context as _;
use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::json;
use tokio::io::AsyncBufReadExt as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use crate::harness::{Cluster, Kubectl};

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).boxed()
}

/// What the fake kubelet was asked, and by whom (client certificate CN).
#[derive(Clone, Debug)]
struct Seen {
    path_and_query: String,
    user: String,
}

struct FakeKubelet {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Lets a followed log stream finish.
    release: Arc<tokio::sync::Notify>,
}

impl FakeKubelet {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    async fn start(
        serving: &pki::IssuedCert,
        client_ca: &str,
        tasks: &Tasks,
    ) -> anyhow::Result<Self> {
        let tls = pki::server_tls_config(
            &serving.cert_pem,
            &serving.key_pem,
            Some(client_ca),
            ClientAuth::Required,
            tasks.clock(),
            &[b"http/1.1"],
        )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let kubelet = FakeKubelet {
            addr,
            seen: seen.clone(),
            release: release.clone(),
        };
        let inner = tasks.clone();
        tasks.spawn("fake-kubelet", async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                let release = release.clone();
                let tasks = inner.clone();
                inner.spawn("fake-kubelet-conn", async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let user = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| pki::identity_of(c).ok())
                        .map(|id| id.common_name)
                        .unwrap_or_default();
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let seen = seen.clone();
                        let release = release.clone();
                        let tasks = tasks.clone();
                        let user = user.clone();
                        async move {
                            let pq = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default();
                            seen.lock().push(Seen {
                                path_and_query: pq,
                                user,
                            });
                            Ok::<_, std::convert::Infallible>(serve(req, &release, &tasks).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(kubelet)
    }
}

fn query_values(req: &hyper::Request<Incoming>, key: &str) -> Vec<String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| {
            let v = v.replace('+', " ");
            let mut out = Vec::new();
            let b = v.as_bytes();
            let mut i = 0;
            while i < b.len() {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                if let (b'%', Some(Ok(x))) = (b[i], hex.map(|h| u8::from_str_radix(h, 16))) {
                    out.push(x);
                    i += 3;
                    continue;
                }
                out.push(b[i]);
                i += 1;
            }
            String::from_utf8_lossy(&out).into_owned()
        })
        .collect()
}

async fn serve(
    mut req: hyper::Request<Incoming>,
    release: &Arc<tokio::sync::Notify>,
    tasks: &Tasks,
) -> hyper::Response<Body> {
    let path = req.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["containerLogs", _ns, pod, container] => {
            if *container == "waiting" {
                let mut r = hyper::Response::new(full(format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
                )));
                *r.status_mut() = http::StatusCode::BAD_REQUEST;
                return r;
            }
            if query_values(&req, "follow") == ["true"] {
                let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
                let release = release.clone();
                let container = container.to_string();
                tasks.spawn("fake-kubelet-follow", async move {
                    for i in 1..=2 {
                        let _ = tx
                            .send(Bytes::from(format!("{container} line {i}\n")))
                            .await;
                    }
                    release.notified().await;
                    let _ = tx.send(Bytes::from(format!("{container} line 3\n"))).await;
                });
                let s = tokio_stream::wrappers::ReceiverStream::new(rx)
                    .map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
                return hyper::Response::new(BodyExt::boxed(StreamBody::new(s)));
            }
            hyper::Response::new(full(format!("{container} line 1\n{container} line 2\n")))
        }
        ["exec", _ns, _pod, _container] => {
            let key = req
                .headers()
                .get("sec-websocket-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let offered = req
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let Some(protocol) = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
                .into_iter()
                .find(|p| offered.split(',').any(|o| o.trim() == *p))
            else {
                let mut r =
                    hyper::Response::new(full("websocket v4/v5 remote command protocol required"));
                *r.status_mut() = http::StatusCode::BAD_REQUEST;
                return r;
            };
            let command = query_values(&req, "command");
            let stdin = query_values(&req, "input") == ["1"];
            let upgrade = hyper::upgrade::on(&mut req);
            tasks.spawn("fake-kubelet-exec", async move {
                let Ok(up) = upgrade.await else { return };
                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(up),
                    Role::Server,
                    None,
                )
                .await;
                exec(ws, command, stdin).await;
            });
            hyper::Response::builder()
                .status(http::StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "websocket")
                .header("connection", "Upgrade")
                .header(
                    "sec-websocket-accept",
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
                )
                .header("sec-websocket-protocol", protocol)
                .body(full(""))
                .unwrap_or_else(|_| hyper::Response::new(full("")))
        }
        ["stats", "summary"] => {
            let mut r = hyper::Response::new(full(
                json!({"node": {"nodeName": "n1", "cpu": {"usageNanoCores": 12345}}}).to_string(),
            ));
            r.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        _ => {
            let mut r = hyper::Response::new(full("404 page not found\n"));
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            r
        }
    }
}

/// The remote-command protocol: 1-byte channel prefix (0 stdin, 1 stdout,
/// 2 stderr, 3 status, 255 close in v5).
async fn exec<S>(mut ws: tokio_tungstenite::WebSocketStream<S>, command: Vec<String>, stdin: bool)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let send = |ch: u8, data: &[u8]| {
        let mut m = vec![ch];
        m.extend_from_slice(data);
        Message::Binary(m.into())
    };
    let status = match command.first().map(String::as_str) {
        Some("cat") if stdin => {
            while let Some(Ok(msg)) = ws.next().await {
                match msg {
                    Message::Binary(b)
                        if b.first() == Some(&0) && ws.send(send(1, &b[1..])).await.is_err() =>
                    {
                        return;
                    }
                    Message::Binary(b) if b.as_ref() == [255, 0] => break,
                    Message::Close(_) => return,
                    _ => {}
                }
            }
            json!({"metadata": {}, "status": "Success"})
        }
        Some("echo") => {
            let line = format!("{}\n", command[1..].join(" "));
            if ws.send(send(1, line.as_bytes())).await.is_err() {
                return;
            }
            json!({"metadata": {}, "status": "Success"})
        }
        _ => {
            let _ = ws
                .send(send(
                    2,
                    format!("{}: not found\n", command.join(" ")).as_bytes(),
                ))
                .await;
            json!({"metadata": {}, "status": "Failure",
                   "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code 127"),
                   "reason": "NonZeroExitCode",
                   "details": {"causes": [{"reason": "ExitCode", "message": "127"}]}})
        }
    };
    let _ = ws.send(send(3, status.to_string().as_bytes())).await;
    // A normal closure (1000): client-go reports a close without a status
    // code (1005) as an error reading the error stream.
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
}

fn cluster_ca(c: &Cluster) -> anyhow::Result<Ca> {
    Ok(Ca::from_pem(
        &std::fs::read_to_string(c.dir.path().join("pki/ca.crt"))?,
        &std::fs::read_to_string(c.dir.path().join("pki/ca.key"))?,
    )?)
}

fn serving_cert(ca: &Ca, c: &Cluster) -> anyhow::Result<pki::IssuedCert> {
    Ok(ca.issue(
        &CertSpec::server(
            "n1",
            &["n1"],
            &["127.0.0.1".parse()?],
            Duration::from_secs(86400),
        ),
        &c.env.clock,
    )?)
}

async fn node(k: &Kubectl, name: &str, port: u16) -> anyhow::Result<()> {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    k.ok_stdin(&["create", "-f", "-"], &node.to_string())
        .await?;
    let status = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    k.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ])
    .await?;
    Ok(())
}

async fn pod(
    k: &Kubectl,
    name: &str,
    node: Option<&str>,
    containers: &[&str],
) -> anyhow::Result<()> {
    let cs: Vec<_> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "registry.cn-hangzhou.aliyuncs.com/kube-easy/app:latest"}))
        .collect();
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": cs}});
    if let Some(n) = node {
        pod["spec"]["nodeName"] = json!(n);
    }
    k.ok_stdin(&["create", "-f", "-"], &pod.to_string()).await?;
    Ok(())
}

/// A port nothing listens on.
fn closed_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[tokio::test]
async fn kubectl_logs_exec_and_node_proxy_reach_the_kubelet() -> anyhow::Result<()> {
    let c = Cluster::start_with(|cfg| cfg.kubelet.dial_timeout = Duration::from_secs(1)).await?;
    let k = c.kubectl("1.33");
    let ca = cluster_ca(&c)?;
    let kubelet = FakeKubelet::start(&serving_cert(&ca, &c)?, ca.cert_pem(), &c.env.tasks).await?;

    k.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}"#,
    )
    .await?;
    node(&k, "n1", kubelet.addr.port()).await?;
    pod(&k, "web", Some("n1"), &["app"]).await?;
    pod(&k, "two", Some("n1"), &["a", "b"]).await?;
    pod(&k, "starting", Some("n1"), &["waiting"]).await?;
    pod(&k, "pending", None, &["app"]).await?;

    // Logs: the only container by default, the kubelet's query.
    let logs = k.ok(&["logs", "web", "--tail=5", "--timestamps"]).await?;
    assert_eq!(logs, "app line 1\napp line 2\n");
    let seen = kubelet.seen();
    let last = seen.last().context("kubelet was called")?;
    assert_eq!(
        last.path_and_query,
        "/containerLogs/default/web/app?tailLines=5&timestamps=true"
    );
    assert_eq!(last.user, "kube-apiserver-kubelet-client");

    // Several containers: kube-apiserver's error for a raw request; kubectl
    // picks one itself with -c.
    let raw = k
        .fails(&["get", "--raw", "/api/v1/namespaces/default/pods/two/log"])
        .await?;
    assert!(
        raw.contains("Error from server (BadRequest): a container name must be specified for pod two, choose one of: [a b]"),
        "{raw}"
    );
    assert_eq!(
        k.ok(&["logs", "two", "-c", "b"]).await?,
        "b line 1\nb line 2\n"
    );
    // The kubelet's own refusal is passed on as a BadRequest.
    let starting = k.fails(&["logs", "starting"]).await?;
    assert!(
        starting.contains("Error from server (BadRequest): container \"waiting\" in pod \"starting\" is waiting to start: ContainerCreating"),
        "{starting}"
    );
    // Not scheduled yet: an empty log, as kube-apiserver answers.
    assert_eq!(k.ok(&["logs", "pending"]).await?, "");

    // logs -f streams: lines arrive before the kubelet ends the stream.
    let mut child = tokio::process::Command::new(&k.bin)
        .arg("--kubeconfig")
        .arg(&k.kubeconfig)
        .args(["logs", "-f", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    assert_eq!(lines.next_line().await?.as_deref(), Some("app line 1"));
    assert_eq!(lines.next_line().await?.as_deref(), Some("app line 2"));
    kubelet.release.notify_one();
    assert_eq!(lines.next_line().await?.as_deref(), Some("app line 3"));
    assert_eq!(lines.next_line().await?, None);
    assert!(child.wait().await?.success());
    assert!(
        kubelet
            .seen()
            .iter()
            .any(|s| s.path_and_query == "/containerLogs/default/web/app?follow=true"),
        "{:?}",
        kubelet.seen()
    );

    // exec over WebSocket, through the upgrade-aware proxy.
    let out = k
        .ok(&["exec", "web", "--", "echo", "hello", "world"])
        .await?;
    assert_eq!(out, "hello world\n");
    let exec = kubelet
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.path_and_query.starts_with("/exec/"))
        .context("exec reached the kubelet")?;
    assert_eq!(
        exec.path_and_query,
        "/exec/default/web/app?command=echo&command=hello&command=world&error=1&output=1&stderr=1&stdout=1"
    );
    // stdin both ways: kubectl's stdin is echoed back by `cat`.
    let echoed = k
        .ok_stdin(&["exec", "-i", "web", "--", "cat"], "ping over websocket\n")
        .await?;
    assert_eq!(echoed, "ping over websocket\n");
    // The exit code travels on the status channel.
    let failed = k.run(&["exec", "web", "-c", "app", "--", "nosuch"]).await?;
    assert!(!failed.ok);
    assert!(
        failed.stderr.contains("nosuch: not found"),
        "{}",
        failed.stderr
    );
    assert!(
        failed
            .stderr
            .contains("command terminated with exit code 127"),
        "{}",
        failed.stderr
    );
    let unscheduled = k.fails(&["exec", "pending", "--", "ls"]).await?;
    assert!(
        unscheduled.contains("pod pending does not have a host assigned"),
        "{unscheduled}"
    );

    // nodes/proxy: the kubelet's stats.
    let stats = k
        .ok(&["get", "--raw", "/api/v1/nodes/n1/proxy/stats/summary"])
        .await?;
    let stats: serde_json::Value = serde_json::from_str(&stats)?;
    assert_eq!(stats["node"]["nodeName"], "n1");
    let missing = k
        .fails(&["get", "--raw", "/api/v1/nodes/n1/proxy/nope"])
        .await?;
    assert!(missing.contains("NotFound"), "{missing}");

    // A kubelet that refuses connections.
    let refused_port = closed_port()?;
    node(&k, "n2", refused_port).await?;
    pod(&k, "lost", Some("n2"), &["app"]).await?;
    let logs = k.fails(&["logs", "lost"]).await?;
    assert!(
        logs.contains(&format!(
            "Error from server: Get \"https://127.0.0.1:{refused_port}/containerLogs/default/lost/app\": dial tcp 127.0.0.1:{refused_port}: connect: connection refused"
        )),
        "{logs}"
    );
    let exec = k.fails(&["exec", "lost", "--", "ls"]).await?;
    assert!(
        exec.contains(&format!(
            "error dialing backend: dial tcp 127.0.0.1:{refused_port}: connect: connection refused"
        )),
        "{exec}"
    );
    let proxy = k
        .fails(&["get", "--raw", "/api/v1/nodes/n2/proxy/stats/summary"])
        .await?;
    assert!(
        proxy.contains(&format!(
            "Error from server (ServiceUnavailable): error trying to reach service: dial tcp 127.0.0.1:{refused_port}: connect: connection refused"
        )),
        "{proxy}"
    );

    // A kubelet whose SYNs go unanswered (a listener with a full accept
    // queue, the loopback stand-in for a security group that drops them):
    // the connect times out, S05's message.
    let blackhole = tokio::net::TcpSocket::new_v4()?;
    blackhole.bind("127.0.0.1:0".parse()?)?;
    let blackhole = blackhole.listen(0)?;
    let hole = blackhole.local_addr()?;
    let _filler = tokio::net::TcpStream::connect(hole).await?;
    node(&k, "n3", hole.port()).await?;
    pod(&k, "dark", Some("n3"), &["app"]).await?;
    let logs = k.fails(&["logs", "dark"]).await?;
    assert!(
        logs.contains(&format!(
            "Error from server: Get \"https://{hole}/containerLogs/default/dark/app\": dial tcp {hole}: i/o timeout"
        )),
        "{logs}"
    );
    let exec = k.fails(&["exec", "dark", "--", "ls"]).await?;
    assert!(
        exec.contains(&format!(
            "error dialing backend: dial tcp {hole}: i/o timeout"
        )),
        "{exec}"
    );
    drop(blackhole);
    Ok(())
}

#[tokio::test]
async fn rbac_guards_logs_and_exec() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let admin = c.kubectl("1.33");
    let ca = cluster_ca(&c)?;
    let kubelet = FakeKubelet::start(&serving_cert(&ca, &c)?, ca.cert_pem(), &c.env.tasks).await?;
    admin
        .ok_stdin(
            &["create", "-f", "-"],
            r#"{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}"#,
        )
        .await?;
    node(&admin, "n1", kubelet.addr.port()).await?;
    pod(&admin, "web", Some("n1"), &["app"]).await?;
    admin
        .ok(&[
            "create",
            "role",
            "log-reader",
            "--verb=get",
            "--resource=pods,pods/log",
        ])
        .await?;
    admin
        .ok(&[
            "create",
            "rolebinding",
            "log-reader",
            "--role=log-reader",
            "--user=lin",
        ])
        .await?;
    let cert = ca.issue(
        &CertSpec::client("lin", &["dev"], Duration::from_secs(3600)),
        &c.env.clock,
    )?;
    let cfg = c.dir.path().join("lin.kubeconfig");
    ackemu_apiserver::write_kubeconfig(
        &cfg,
        &format!("https://{}", c.server.addr),
        &c.server.ca_pem,
        "lin",
        cert,
    )?;
    let lin = admin.with_kubeconfig(&cfg);
    assert_eq!(lin.ok(&["logs", "web"]).await?, "app line 1\napp line 2\n");
    let before = kubelet.seen().len();
    let exec = lin.fails(&["exec", "web", "--", "echo", "hi"]).await?;
    assert!(
        exec.contains("User \"lin\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"default\""),
        "{exec}"
    );
    let proxy = lin
        .fails(&["get", "--raw", "/api/v1/nodes/n1/proxy/stats/summary"])
        .await?;
    assert!(
        proxy.contains("User \"lin\" cannot get resource \"nodes/proxy\" in API group \"\" at the cluster scope"),
        "{proxy}"
    );
    assert_eq!(
        kubelet.seen().len(),
        before,
        "nothing denied reached the kubelet"
    );
    // `get` on pods/exec is what a WebSocket exec (a GET) needs in 1.33.
    admin
        .ok(&[
            "create",
            "role",
            "exec-get",
            "--verb=get",
            "--resource=pods/exec",
        ])
        .await?;
    admin
        .ok(&[
            "create",
            "rolebinding",
            "exec-get",
            "--role=exec-get",
            "--user=lin",
        ])
        .await?;
    assert_eq!(lin.ok(&["exec", "web", "--", "echo", "hi"]).await?, "hi\n");
    Ok(())
}

#[tokio::test]
async fn kubelet_serving_certificates_are_checked_only_with_a_ca() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let ca = cluster_ca(&c)?;
    let other = Ca::generate("someone-else", &c.env.clock, Duration::from_secs(86400))?;
    let kubelet =
        FakeKubelet::start(&serving_cert(&other, &c)?, ca.cert_pem(), &c.env.tasks).await?;
    let client = ca.issue(
        &CertSpec::client(
            ackemu_apiserver::KUBELET_CLIENT_CN,
            &["system:masters"],
            Duration::from_secs(3600),
        ),
        &c.env.clock,
    )?;
    let loc = Location {
        scheme: "https".into(),
        host: "127.0.0.1".into(),
        port: kubelet.addr.port(),
        path: "/stats/summary".into(),
        query: String::new(),
    };
    let mut cfg = KubeletConfig::new(client.cert_pem.clone(), client.key_pem.clone());
    let unverified = Kubelets::new(cfg.clone(), &c.env.clock)?;
    assert!(
        unverified
            .connect(&loc, false, true, &c.env.clock)
            .await
            .is_ok()
    );
    cfg.ca_pem = Some(ca.cert_pem().to_owned());
    let verified = Kubelets::new(cfg.clone(), &c.env.clock)?;
    let e = verified
        .connect(&loc, false, true, &c.env.clock)
        .await
        .err()
        .context("a certificate from another CA is refused")?;
    assert_eq!(
        e,
        "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    );
    // insecureSkipTLSVerifyBackend skips it again.
    assert!(
        verified
            .connect(&loc, true, true, &c.env.clock)
            .await
            .is_ok()
    );
    cfg.ca_pem = Some(other.cert_pem().to_owned());
    let right = Kubelets::new(cfg, &c.env.clock)?;
    assert!(right.connect(&loc, false, true, &c.env.clock).await.is_ok());
    Ok(())
}
