//! The kubelet API (`ackemu_nodeagent::server`) served in-process over a
//! real runtime: client certificates from a test CA, the authorizer's
//! decisions with the kubelet's texts, `/pods`, `/containerLogs` with its
//! options, WebSocket exec running real processes in the pod's netns, and
//! `/stats/summary` from /proc.

use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::pki::{Ca, CertSpec};
use ackemu_base::tasks::Tasks;
use ackemu_kube::api::core::v1::{Container, Pod, PodSpec};
use ackemu_kube::meta::ObjectMeta;
use ackemu_nodeagent::server::auth::{Attributes, Authorizer, Decision};
use ackemu_nodeagent::server::{self, PodProvider, ServerConfig};
use ackemu_proto::ackemu::node::v1 as pb;
use futures::future::BoxFuture;
use futures::{SinkExt as _, StreamExt as _};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::server_rig::{Ctr, Node, sh};
use crate::util::{DEADLINE, can_netns, wait_for};

/// Allows `system:masters`, records every question.
#[derive(Default)]
struct Fake {
    asked: Mutex<Vec<Attributes>>,
}

impl Authorizer for Fake {
    fn authorize<'a>(&'a self, a: &'a Attributes) -> BoxFuture<'a, Result<Decision, String>> {
        self.asked.lock().push(a.clone());
        Box::pin(async move {
            Ok(if a.user.groups.iter().any(|g| g == "system:masters") {
                Decision::Allow
            } else {
                Decision::Deny("no RBAC policy matched".into())
            })
        })
    }
}

struct Pods;

impl PodProvider for Pods {
    fn pods(&self) -> Vec<Pod> {
        vec![Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some("uid-web".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("toolbox".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }]
    }
}

struct Certs {
    dir: std::path::PathBuf,
    server_ca: String,
    admin: (String, String),
}

impl Certs {
    fn curl(&self, who: Option<&str>, url: &str) -> (u16, String) {
        let mut c = std::process::Command::new("curl");
        c.args(["-sS", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.dir.join("server-ca.pem"));
        if let Some(w) = who {
            c.arg("--cert")
                .arg(self.dir.join(format!("{w}.crt")))
                .arg("--key")
                .arg(self.dir.join(format!("{w}.key")));
        }
        let out = c.arg(url).output().expect("curl");
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

async fn next(clock: &Clock, l: &mut Lines) -> Option<String> {
    clock
        .timeout(DEADLINE, l.next_line())
        .await
        .expect("a log line or the end within the deadline")
        .expect("reading curl's output")
}

async fn ws_exec(
    certs: &Certs,
    clock: &Clock,
    addr: std::net::SocketAddr,
    query: &str,
    protocol: &str,
    stdin: Option<&[u8]>,
    resize: Option<(u32, u32)>,
) -> (String, String, Value, String) {
    let tls = ackemu_base::pki::client_tls_config(
        &certs.server_ca,
        Some((&certs.admin.0, &certs.admin.1)),
        clock,
        &[b"http/1.1"],
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .unwrap();
    let mut req = format!("wss://{addr}/exec/shop/web/app?{query}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream)
        .await
        .expect("websocket handshake");
    let chosen = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    if let Some((w, h)) = resize {
        let mut m = vec![4u8];
        m.extend_from_slice(format!(r#"{{"Width":{w},"Height":{h}}}"#).as_bytes());
        ws.send(Message::Binary(m.into())).await.unwrap();
    }
    if let Some(data) = stdin {
        let mut m = vec![0u8];
        m.extend_from_slice(data);
        ws.send(Message::Binary(m.into())).await.unwrap();
        ws.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .unwrap();
    }
    let (mut out, mut err, mut status) = (String::new(), String::new(), Value::Null);
    let read = async {
        while let Some(m) = ws.next().await {
            let Ok(Message::Binary(b)) = m else { continue };
            match b[0] {
                1 => out.push_str(&String::from_utf8_lossy(&b[1..])),
                2 => err.push_str(&String::from_utf8_lossy(&b[1..])),
                3 => status = serde_json::from_slice(&b[1..]).unwrap(),
                _ => {}
            }
        }
    };
    clock
        .timeout(DEADLINE, read)
        .await
        .expect("the exec session ends");
    (out, err, status, chosen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_api_authenticates_authorizes_and_serves_logs_exec_pods_and_stats() {
    if !can_netns("kubelet_api_authenticates_authorizes_and_serves_logs_exec_pods_and_stats") {
        return;
    }
    let mut n = Node::start("172.16.12.0/24").await;
    let sb = n.run_sandbox("shop", "web").await;
    let first = n
        .run_container(
            &sb,
            "shop",
            "web",
            Ctr {
                name: "app",
                image: "toolbox",
                command: sh("echo first-run"),
                mounts: vec![],
                attempt: 0,
            },
        )
        .await;
    let clock = Clock::real();
    let deadline = clock.now() + DEADLINE;
    while n
        .status(&first)
        .await
        .status
        .is_none_or(|s| s.state != pb::ContainerState::ContainerExited as i32)
    {
        assert!(clock.now() < deadline, "the first attempt did not exit");
        clock.sleep(Duration::from_millis(50)).await;
    }
    let id = n
        .run_container(
            &sb,
            "shop",
            "web",
            Ctr {
                name: "app",
                image: "toolbox",
                command: sh("echo one; echo two; echo three; exec sleep 1000"),
                mounts: vec![],
                attempt: 1,
            },
        )
        .await;
    let log = n.log_path(&id).await;
    wait_for("the container logged three lines", || {
        crate::server_rig::read(&log).contains("F three")
    })
    .await;
    let pid = n.pid(&id).await;

    let tasks = Tasks::new(clock.clone());
    let ca = Ca::generate("kubernetes", &clock, Duration::from_secs(86400)).unwrap();
    let dir = n.path("certs");
    std::fs::create_dir_all(&dir).unwrap();
    let issue = |who: &str, groups: &[&str]| {
        let c = ca
            .issue(
                &CertSpec::client(who, groups, Duration::from_secs(3600)),
                &clock,
            )
            .unwrap();
        std::fs::write(dir.join(format!("{who}.crt")), &c.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{who}.key")), &c.key_pem).unwrap();
        (c.cert_pem, c.key_pem)
    };
    let admin = issue("kube-apiserver-kubelet-client", &["system:masters"]);
    issue("jane", &["dev"]);
    let fake = Arc::new(Fake::default());
    let srv = server::serve(
        ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            node_name: "n1".into(),
            runtime_socket: n.runtime_socket(),
            client_ca_pem: Some(ca.cert_pem().to_string()),
            serving: None,
            serving_ips: vec![],
            anonymous_auth: false,
        },
        server::Auth {
            tokens: None,
            authorizer: fake.clone(),
        },
        Arc::new(Pods),
        &tasks,
        &clock,
        tasks.token(),
    )
    .await
    .unwrap();
    std::fs::write(dir.join("server-ca.pem"), &srv.cert_pem).unwrap();
    let certs = Certs {
        dir: dir.clone(),
        server_ca: srv.cert_pem.clone(),
        admin,
    };
    let base = format!("https://{}", srv.local_addr);
    let admin_user = Some("kube-apiserver-kubelet-client");

    // Authentication and authorization.
    assert_eq!(
        certs.curl(None, &format!("{base}/healthz")),
        (401, "Unauthorized\n".to_string())
    );
    assert_eq!(
        certs.curl(Some("jane"), &format!("{base}/stats/summary")),
        (
            403,
            "Forbidden (user=jane, verb=get, resource=nodes, subresource(s)=[stats])\n".to_string()
        )
    );
    assert_eq!(
        certs
            .curl(Some("jane"), &format!("{base}/containerLogs/shop/web/app"))
            .0,
        403
    );
    {
        let asked = fake.asked.lock();
        let a = asked.last().unwrap();
        assert_eq!(
            (
                a.verb.as_str(),
                a.resource.as_str(),
                a.subresource.as_str(),
                a.name.as_str()
            ),
            ("get", "nodes", "proxy", "n1")
        );
        assert_eq!(a.user.groups, vec!["dev", "system:authenticated"]);
    }
    assert_eq!(
        certs.curl(admin_user, &format!("{base}/healthz")),
        (200, "ok".to_string())
    );

    // /pods.
    let (code, body) = certs.curl(admin_user, &format!("{base}/pods"));
    assert_eq!(code, 200, "{body}");
    let pods: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pods["kind"], "PodList");
    assert_eq!(pods["items"][0]["metadata"]["name"], "web");

    // Logs.
    let logs = |q: &str| certs.curl(admin_user, &format!("{base}/containerLogs/shop/web/app{q}"));
    assert_eq!(logs(""), (200, "one\ntwo\nthree\n".to_string()));
    assert_eq!(logs("?tailLines=1"), (200, "three\n".to_string()));
    assert_eq!(logs("?limitBytes=5"), (200, "one\nt".to_string()));
    assert_eq!(logs("?previous=true"), (200, "first-run\n".to_string()));
    let (code, body) = logs("?timestamps=true&tailLines=2");
    assert_eq!(code, 200);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 2, "{body}");
    for (l, want) in lines.iter().zip(["two", "three"]) {
        let (ts, msg) = l.split_once(' ').unwrap();
        assert_eq!(msg, want);
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
            "{ts}"
        );
    }
    assert_eq!(
        logs("?tailLines=-1").0,
        400,
        "a negative tail is a bad request"
    );
    assert_eq!(
        certs.curl(admin_user, &format!("{base}/containerLogs/shop/web/nope")),
        (
            404,
            "container \"nope\" not found in pod \"web\"\n".to_string()
        )
    );
    assert_eq!(
        certs
            .curl(admin_user, &format!("{base}/containerLogs/shop/gone/app"))
            .0,
        404
    );

    // follow: a line written later arrives; the stream ends when the
    // container stops.
    let mut follow = tokio::process::Command::new("curl")
        .args(["-sS", "-N", "--cacert"])
        .arg(dir.join("server-ca.pem"))
        .arg("--cert")
        .arg(dir.join("kube-apiserver-kubelet-client.crt"))
        .arg("--key")
        .arg(dir.join("kube-apiserver-kubelet-client.key"))
        .arg(format!(
            "{base}/containerLogs/shop/web/app?follow=true&tailLines=1"
        ))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    assert_eq!(next(&clock, &mut lines).await.as_deref(), Some("three"));
    let wrote = n
        .cri
        .exec_sync(pb::ExecSyncRequest {
            container_id: id.clone(),
            cmd: sh(&format!("echo four > /proc/{pid}/fd/1")),
            timeout: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        wrote.exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&wrote.stderr)
    );
    assert_eq!(next(&clock, &mut lines).await.as_deref(), Some("four"));

    // exec over WebSocket, v4: stdout, stderr and a non-zero exit.
    let q = "command=sh&command=-c&command=echo+out%3B+echo+err+%3E%262%3B+readlink+%2Fproc%2Fself%2Fns%2Fnet%3B+exit+3&stdout=1&stderr=1";
    let (out, err, status, proto) = ws_exec(
        &certs,
        &clock,
        srv.local_addr,
        q,
        "v4.channel.k8s.io",
        None,
        None,
    )
    .await;
    assert_eq!(proto, "v4.channel.k8s.io");
    let netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(
        out,
        format!("out\n{}\n", netns.display()),
        "runs in the pod netns"
    );
    assert_eq!(err, "err\n");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // v5 (preferred when offered): stdin, closed with the close signal.
    let (out, _, status, proto) = ws_exec(
        &certs,
        &clock,
        srv.local_addr,
        "command=cat&stdin=1&stdout=1",
        "v5.channel.k8s.io, v4.channel.k8s.io",
        Some(b"hello from stdin\n"),
        None,
    )
    .await;
    assert_eq!(proto, "v5.channel.k8s.io");
    assert_eq!(out, "hello from stdin\n");
    assert_eq!(status["status"], "Success");

    // A toolbox-like command: the pod's own address from inside.
    let (out, _, status, _) = ws_exec(
        &certs,
        &clock,
        srv.local_addr,
        "command=ip&command=-o&command=-4&command=addr&command=show&command=eth0&stdout=1",
        "v5.channel.k8s.io",
        None,
        None,
    )
    .await;
    assert_eq!(status["status"], "Success", "{status}");
    assert!(out.contains("172.16.12."), "{out}");

    // kubectl exec -it: a pty as the controlling terminal, resized.
    let (out, _, status, _) = ws_exec(
        &certs,
        &clock,
        srv.local_addr,
        "command=sh&stdin=1&stdout=1&tty=1",
        "v5.channel.k8s.io",
        Some(b"stty size; tty; exit 7\n"),
        Some((123, 45)),
    )
    .await;
    assert!(out.contains("45 123"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert_eq!(status["details"]["causes"][0]["message"], "7", "{status}");

    // Stats from real processes.
    let (code, body) = certs.curl(admin_user, &format!("{base}/stats/summary"));
    assert_eq!(code, 200, "{body}");
    let s: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["node"]["nodeName"], "n1");
    assert!(s["node"]["memory"]["availableBytes"].as_u64().unwrap() > 0);
    assert!(s["node"]["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0);
    let pod = s["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["name"] == "web")
        .unwrap_or_else(|| panic!("pod web in {body}"));
    assert_eq!(pod["podRef"]["namespace"], "shop");
    assert_eq!(pod["podRef"]["uid"], "uid-web");
    assert_eq!(pod["containers"][0]["name"], "app");
    assert!(pod["containers"][0]["memory"]["rssBytes"].as_u64().unwrap() > 0);
    let (_, body) = certs.curl(admin_user, &format!("{base}/stats/summary"));
    let s: Value = serde_json::from_str(&body).unwrap();
    assert!(
        s["node"]["cpu"]["usageNanoCores"].is_u64(),
        "a second sample gives a rate: {}",
        s["node"]
    );
    assert!(s["pods"][0]["containers"][0]["cpu"]["usageNanoCores"].is_u64());

    // The container stops: the follow stream ends.
    n.cri
        .stop_container(pb::StopContainerRequest {
            container_id: id.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
    assert_eq!(next(&clock, &mut lines).await, None, "follow ends");
    tasks.token().cancel();
}
