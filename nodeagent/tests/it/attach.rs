//! `ackemu-node attach` against a real control plane (etcd, the API
//! server and controller-manager binaries): token discovery with the JWS
//! the bootstrap signer writes, CA pinning, TLS bootstrap through a CSR the
//! approver and signer issue, the node kubeconfig; a wrong secret, an
//! unknown token, a token the API server rejects (401) and a forged
//! cluster-info served by an impostor are refused and register nothing.

use std::process::Output;
use std::sync::Arc;

use ackemu_base::pki;
use ackemu_kube::client::{Client, ClientConfig};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::attach_cluster::{ControlPlane, eventually};
use crate::util::{BIN, text};

fn secret(id: &str, auth: bool) -> Value {
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut data = json!({
        "token-id": b(id),
        "token-secret": b("0123456789abcdef"),
        "usage-bootstrap-signing": b("true"),
        "auth-extra-groups": b("system:bootstrappers:kubeadm:default-node-token"),
    });
    if auth {
        data["usage-bootstrap-authentication"] = json!(b("true"));
    }
    json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
           "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
           "data": data})
}

/// What kubeadm init sets up for joining nodes.
async fn kubeadm_init(cp: &ControlPlane) -> anyhow::Result<()> {
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    cp.create(&format!("{rbac}/namespaces/kube-public/roles"), json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo", "namespace": "kube-public"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cluster-info"], "verbs": ["get"]}]})).await?;
    cp.create(&format!("{rbac}/namespaces/kube-public/rolebindings"), json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo", "namespace": "kube-public"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubeadm:bootstrap-signer-clusterinfo"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}]})).await?;
    cp.create(&format!("{rbac}/clusterroles"), json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "system:node-bootstrapper"},
        "rules": [{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["create", "get", "list", "watch"]}]})).await?;
    cp.create(&format!("{rbac}/clusterroles"), json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "system:certificates.k8s.io:certificatesigningrequests:nodeclient"},
        "rules": [{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/nodeclient"], "verbs": ["create"]}]})).await?;
    for (name, role) in [
        ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper"),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
        ),
    ] {
        cp.create(&format!("{rbac}/clusterrolebindings"), json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:bootstrappers:kubeadm:default-node-token"}]})).await?;
    }
    let ca = std::fs::read_to_string(cp.pki("ca.crt"))?;
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    certificate-authority-data: {}\n    server: {}\ncontexts: null\ncurrent-context: \"\"\nusers: null\n",
        base64::engine::general_purpose::STANDARD.encode(&ca),
        cp.url
    );
    cp.create(
        "/api/v1/namespaces/kube-public/configmaps",
        json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": kubeconfig}}),
    )
    .await?;
    cp.create(
        "/api/v1/namespaces/kube-system/secrets",
        secret("abcdef", true),
    )
    .await?;
    cp.create(
        "/api/v1/namespaces/kube-system/secrets",
        secret("bbbbbb", false),
    )
    .await?;
    Ok(())
}

fn attach(url: &str, token: &str, node: &str, dir: &std::path::Path, extra: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .args([
            "attach",
            "--apiserver",
            url,
            "--token",
            token,
            "--node-name",
            node,
        ])
        .arg("--data-dir")
        .arg(dir.join(node))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .args(["--bootstrap-timeout", "60s"])
        .args(extra)
        .output()
        .expect("run ackemu-node attach")
}

async fn csr_names(cp: &ControlPlane) -> Vec<String> {
    let l = cp
        .client
        .request(
            "GET",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            None,
        )
        .await
        .unwrap();
    l["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// An impostor API server answering cluster-info with its own CA and a
/// signature it cannot make without the token.
async fn impostor(tasks: &ackemu_base::tasks::Tasks, clock: &ackemu_base::clock::Clock) -> String {
    let ca = pki::Ca::generate("evil", clock, std::time::Duration::from_secs(3600)).unwrap();
    let srv = ca
        .issue(
            &pki::CertSpec::server(
                "evil",
                &[],
                &["127.0.0.1".parse().unwrap()],
                std::time::Duration::from_secs(3600),
            ),
            clock,
        )
        .unwrap();
    let tls = pki::server_tls_config(
        &srv.cert_pem,
        &srv.key_pem,
        None,
        pki::ClientAuth::None,
        clock,
        &[b"http/1.1"],
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    certificate-authority-data: {}\n    server: https://{addr}\n",
        base64::engine::general_purpose::STANDARD.encode(ca.cert_pem())
    );
    // A signature with a guessed secret.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"alg":"HS256","kid":"abcdef"}"#);
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": kubeconfig, "jws-kubeconfig-abcdef": format!("{header}..{}", b64.encode([7u8; 32]))}})
    .to_string();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    tasks.spawn("impostor", async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let body = body.clone();
            let svc = hyper::service::service_fn(move |_req| {
                let body = body.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
        }
    });
    format!("https://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_joins_with_the_bootstrap_token_and_refuses_forgeries_and_bad_tokens()
-> anyhow::Result<()> {
    let mut cp = ControlPlane::start().await?;
    kubeadm_init(&cp).await?;
    cp.start_controller_manager()?;
    let cl = cp.client.clone();
    eventually("cluster-info signed for both tokens", || {
        let cl = cl.clone();
        async move {
            let cm = cl
                .request(
                    "GET",
                    "/api/v1/namespaces/kube-public/configmaps/cluster-info",
                    None,
                )
                .await?;
            Ok((cm["data"]["jws-kubeconfig-abcdef"].is_string()
                && cm["data"]["jws-kubeconfig-bbbbbb"].is_string())
            .then_some(()))
        }
    })
    .await?;
    let work = tempfile::tempdir()?;
    let ca = std::fs::read_to_string(cp.pki("ca.crt"))?;
    let pin = ackemu_nodeagent::attach::discovery::ca_hashes(&ca).unwrap()[0].clone();

    // A wrong secret: the signature does not verify.
    let out = attach(&cp.url, "abcdef.ffffffffffffffff", "n0", work.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "failed to verify JWS signature of received cluster info object, can't trust this API Server"
        ),
        "{}",
        text(&out)
    );
    // An unknown token id.
    let out = attach(&cp.url, "zzzzzz.0123456789abcdef", "n0", work.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("token id \"zzzzzz\" is invalid for this cluster or it has expired"),
        "{}",
        text(&out)
    );
    // A token the API server does not accept for authentication: 401.
    let out = attach(&cp.url, "bbbbbb.0123456789abcdef", "n0", work.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("rejected the bootstrap token \"bbbbbb\" (401 Unauthorized)"),
        "{}",
        text(&out)
    );
    // An impostor's cluster-info.
    let evil = impostor(&cp.tasks, &cp.clock).await;
    let out = attach(&evil, "abcdef.0123456789abcdef", "n0", work.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("failed to verify JWS signature"),
        "{}",
        text(&out)
    );
    // A pin that does not match.
    let wrong_pin = format!("sha256:{}", "ab".repeat(32));
    let out = attach(
        &cp.url,
        "abcdef.0123456789abcdef",
        "n0",
        work.path(),
        &["--discovery-token-ca-cert-hash", &wrong_pin],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("not pinned"), "{}", text(&out));
    assert!(csr_names(&cp).await.is_empty(), "nothing was registered");
    assert!(!work.path().join("n0/kubelet.conf").exists());

    // The real join.
    let out = attach(
        &cp.url,
        "abcdef.0123456789abcdef",
        "n1",
        work.path(),
        &["--discovery-token-ca-cert-hash", &pin],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\ncontroller-manager: {}",
        text(&out),
        cp.log("controller-manager.log")
    );
    let t = text(&out);
    assert!(t.contains("This node has joined the cluster"), "{t}");
    assert!(t.contains("systemd is not running on this node"), "{t}");
    let names = csr_names(&cp).await;
    assert_eq!(names.len(), 1, "{names:?}");
    let csr = cp
        .client
        .request(
            "GET",
            &format!(
                "/apis/certificates.k8s.io/v1/certificatesigningrequests/{}",
                names[0]
            ),
            None,
        )
        .await?;
    assert_eq!(
        csr["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert_eq!(csr["spec"]["username"], "system:bootstrap:abcdef");
    assert_eq!(csr["status"]["conditions"][0]["type"], "Approved");

    let kc = work.path().join("n1/kubelet.conf");
    let cfg = ClientConfig::from_kubeconfig(&kc)?;
    assert_eq!(cfg.server, cp.url);
    let (cert, _) = cfg.client_cert.clone().expect("a client certificate");
    let der = pki::certs_from_pem(&cert)?;
    let id = pki::identity_of(&der[0])?;
    assert_eq!(id.common_name, "system:node:n1");
    assert_eq!(id.organizations, vec!["system:nodes"]);
    assert_eq!(
        std::fs::read_to_string(work.path().join("n1/pki/ca.crt"))?,
        ca
    );
    // The API server accepts it as the node.
    let node = Client::new(cfg, cp.clock.clone(), cp.tasks.clone())?;
    let review = node
        .request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some((
                "application/json",
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
                    .to_string()
                    .into_bytes(),
            )),
        )
        .await?;
    assert_eq!(review["status"]["userInfo"]["username"], "system:node:n1");

    // With --bin-dir the node's units are laid down and its systemd
    // started: the Node is registered, node IPAM gives it a pod CIDR.
    // (Nothing is wired in the host namespace: cnid creates its bridge on
    // the first pod, and no pod lands here.)
    let bin = work.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    std::os::unix::fs::symlink(BIN, bin.join("ackemu-node"))?;
    let out = std::process::Command::new(BIN)
        .args([
            "attach",
            "--apiserver",
            &cp.url,
            "--token",
            "abcdef.0123456789abcdef",
        ])
        .args([
            "--node-name",
            "n2",
            "--node-ip",
            "192.168.0.22",
            "--cluster-dns",
            "172.19.0.10",
        ])
        .arg("--data-dir")
        .arg(work.path().join("n2"))
        .arg("--bin-dir")
        .arg(&bin)
        .args(["--bootstrap-timeout", "60s"])
        .output()?;
    let n2 = work.path().join("n2");
    let systemd_pid: Option<i32> = std::fs::read_to_string(n2.join("systemd.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    let _stop = StopOnDrop(systemd_pid);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}
systemd: {}",
        text(&out),
        std::fs::read_to_string(n2.join("systemd.log")).unwrap_or_default()
    );
    let t = text(&out);
    assert!(t.contains("[kubelet-start] Registered node n2"), "{t}");
    assert!(
        t.contains("[kubelet-start] Node n2 has pod CIDR 172.16."),
        "{t}"
    );
    let node = cp.client.request("GET", "/api/v1/nodes/n2", None).await?;
    assert!(
        node["spec"]["podCIDR"]
            .as_str()
            .unwrap_or("")
            .starts_with("172.16.")
    );
    for u in ["cnid.service", "runtime.service", "kubelet.service"] {
        assert!(n2.join("units").join(u).exists(), "{u}");
    }
    assert!(n2.join("cni/net.d/10-ackemu.conf").exists());
    let rd = n2.join("run").display().to_string();
    for u in ["cnid.service", "runtime.service"] {
        let o = std::process::Command::new(BIN)
            .args(["systemctl", "--run-dir", &rd, "is-active", u])
            .output()?;
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "active",
            "{u}: {}",
            text(&o)
        );
    }
    let sock = n2.join("run/runtime.sock");
    crate::util::wait_socket(&sock).await;
    Ok(())
}

/// SIGTERM the node's systemd (it stops its units) and wait for it.
struct StopOnDrop(Option<i32>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Some(pid) = self.0 else { return };
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let clock = ackemu_base::clock::Clock::real();
        let deadline = clock.now() + crate::util::DEADLINE;
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
        {
            if clock.now() > deadline {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                break;
            }
            std::thread::park_timeout(std::time::Duration::from_millis(50));
        }
    }
}
