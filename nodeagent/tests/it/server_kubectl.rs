//! `kubectl logs` and `kubectl exec` end to end: the real `kubectl.1.33`
//! against the real API server, which proxies to this node's kubelet API
//! (`ackemu_nodeagent::server`) with its kubelet client certificate; the
//! server authorizes through a real SubjectAccessReview and runs the exec
//! in the pod's namespaces.

use std::sync::Arc;

use ackemu_kube::api::core::v1::Pod;
use ackemu_nodeagent::server::auth::SubjectAccessReviewer;
use ackemu_nodeagent::server::{self, PodProvider, ServerConfig};
use serde_json::json;

use crate::attach_cluster::ControlPlane;
use crate::server_rig::{Ctr, Node, read, sh};
use crate::util::{can_netns, text, wait_for};

struct One(Pod);

impl PodProvider for One {
    fn pods(&self) -> Vec<Pod> {
        vec![self.0.clone()]
    }
}

/// `kubectl.1.33`, beside the `kubectl` dispatcher.
fn kubectl_bin() -> std::path::PathBuf {
    let which = std::process::Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .expect("sh");
    let path = std::path::PathBuf::from(String::from_utf8_lossy(&which.stdout).trim());
    path.parent()
        .map(|d| d.join("kubectl.1.33"))
        .unwrap_or_else(|| "kubectl.1.33".into())
}

fn kubectl(cp: &ControlPlane, args: &[&str]) -> std::process::Output {
    std::process::Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(cp.dir.path().join("admin.kubeconfig"))
        .args(args)
        .output()
        .expect("run kubectl.1.33")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_and_exec_reach_the_pod_through_the_api_server() -> anyhow::Result<()> {
    if !can_netns("kubectl_logs_and_exec_reach_the_pod_through_the_api_server") {
        return Ok(());
    }
    let cp = ControlPlane::start().await?;
    let mut n = Node::start("172.16.14.0/24").await;
    let sb = n.run_sandbox("shop", "web").await;
    let id = n
        .run_container(
            &sb,
            "shop",
            "web",
            Ctr {
                name: "app",
                image: "toolbox",
                command: sh("echo hello-from-pod; exec sleep 1000"),
                mounts: vec![],
                attempt: 0,
            },
        )
        .await;
    let log = n.log_path(&id).await;
    wait_for("the pod logged", || read(&log).contains("hello-from-pod")).await;

    let srv = server::serve(
        ServerConfig {
            listen: "127.0.0.1:0".parse()?,
            node_name: "n1".into(),
            runtime_socket: n.runtime_socket(),
            client_ca_pem: Some(std::fs::read_to_string(cp.pki("ca.crt"))?),
            serving: None,
            serving_ips: vec![],
            anonymous_auth: false,
        },
        server::Auth {
            tokens: None,
            authorizer: SubjectAccessReviewer::new(
                cp.client.clone(),
                cp.clock.clone(),
                Default::default(),
            ),
        },
        Arc::new(One(serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web"},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "toolbox"}]},
        }))?)),
        &cp.tasks,
        &cp.clock,
        cp.tasks.token(),
    )
    .await?;

    cp.create(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    )
    .await?;
    // What the service-account controller would have created.
    cp.create(
        "/api/v1/namespaces/shop/serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "shop"}}),
    )
    .await?;
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": srv.local_addr.port()}}}});
    cp.create("/api/v1/nodes", node.clone()).await?;
    cp.client
        .request(
            "PUT",
            "/api/v1/nodes/n1/status",
            Some(("application/json", {
                let cur = cp.client.request("GET", "/api/v1/nodes/n1", None).await?;
                let mut v = cur.clone();
                v["status"] = node["status"].clone();
                v.to_string().into_bytes()
            })),
        )
        .await?;
    cp.create(
        "/api/v1/namespaces/shop/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop"},
               "spec": {"nodeName": "n1", "automountServiceAccountToken": false,
                        "containers": [{"name": "app", "image": "toolbox"}]}}),
    )
    .await?;

    let out = kubectl(&cp, &["logs", "-n", "shop", "web", "-c", "app"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        cp.log("apiserver.log")
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-from-pod\n");

    let out = kubectl(
        &cp,
        &[
            "exec",
            "-n",
            "shop",
            "web",
            "-c",
            "app",
            "--",
            "sh",
            "-c",
            "echo $((6*7)); echo oops >&2",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");

    let out = kubectl(
        &cp,
        &["exec", "-n", "shop", "web", "--", "sh", "-c", "exit 3"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("command terminated with exit code 3"),
        "{}",
        text(&out)
    );
    Ok(())
}
