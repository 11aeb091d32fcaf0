//! What `kubeadm init` writes into a fresh cluster so that nodes can join
//! with a bootstrap token: the token Secret, the RBAC that lets
//! `system:bootstrappers` ask for node client certificates (and has them
//! auto-approved), anonymous read access to `kube-public/cluster-info`, and
//! the unsigned `cluster-info` ConfigMap that the controller manager's
//! bootstrap signer signs with every signing token. All of it is created
//! through the API as ordinary objects; existing objects are left alone,
//! so resuming a cluster re-runs this harmlessly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ackemu_base::CommonArgs;
use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::client::{Client, ClientConfig, ListParams};
use anyhow::Context as _;
use serde_json::{Value, json};

/// The kubeadm group every default join token carries.
pub const TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// A client from a kubeconfig.
pub fn connect(kubeconfig: &Path, clock: &Clock) -> anyhow::Result<Client> {
    let cfg = ClientConfig::from_kubeconfig(kubeconfig)?;
    Ok(Client::new(cfg, clock.clone(), Tasks::new(clock.clone()))?)
}

/// Creates `obj` unless it exists.
pub async fn ensure(c: &Client, api_version: &str, kind: &str, obj: Value) -> anyhow::Result<()> {
    let info = c
        .registry()
        .by_api_version_kind(api_version, kind)
        .cloned()
        .with_context(|| format!("{api_version} {kind} is not served"))?;
    let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
    let api = c.resource(&info, ns.as_deref());
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    // A store busy with an election answers 5xx for a moment: retry those
    // (bounded), as kubeadm's clients do; anything else is final.
    let clock = Clock::real();
    let deadline = clock.now() + Duration::from_secs(60);
    loop {
        match api.create(&obj).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Some(409) => return Ok(()),
            Err(e) if e.code().is_none_or(|c| c >= 500 || c == 429) && clock.now() < deadline => {
                tracing::debug!("creating {kind} {name}: {e}; retrying");
                clock.sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("creating {kind} {name}: {e}")),
        }
    }
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
           "rules": rules})
}

fn binding(name: &str, role: &str, subject_kind: &str, subject: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
           "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": subject_kind, "name": subject}]})
}

/// Creates the token, RBAC and `cluster-info` (server
/// `https://<master_ip>:6443`, CA from `<dir>/pki/ca.crt`).
pub async fn bootstrap(c: &Client, token: &str, master_ip: &str, dir: &Path) -> anyhow::Result<()> {
    let (id, secret) = token
        .split_once('.')
        .with_context(|| format!("bootstrap token {token:?} is not <id>.<secret>"))?;
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    ensure(
        c,
        "v1",
        "Secret",
        json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
               "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
               "data": {"token-id": b64(id), "token-secret": b64(secret),
                        "description": b64("ackemu up: the workers' join token"),
                        "usage-bootstrap-authentication": b64("true"),
                        "usage-bootstrap-signing": b64("true"),
                        "auth-extra-groups": b64(TOKEN_GROUP)}}),
    )
    .await?;
    // kube-apiserver's bootstrap policy for the TLS bootstrap ...
    let rbac = "rbac.authorization.k8s.io/v1";
    for (name, rules) in [
        (
            "system:node-bootstrapper",
            json!([{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"],
                    "verbs": ["create", "get", "list", "watch"]}]),
        ),
        (
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            json!([{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/nodeclient"],
                    "verbs": ["create"]}]),
        ),
        (
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            json!([{"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/selfnodeclient"],
                    "verbs": ["create"]}]),
        ),
        (
            "kubeadm:get-nodes",
            json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]),
        ),
    ] {
        ensure(c, rbac, "ClusterRole", cluster_role(name, rules)).await?;
    }
    // ... and kubeadm's bindings of it.
    for (name, role, kind, subject) in [
        (
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            "Group",
            TOKEN_GROUP,
        ),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "Group",
            TOKEN_GROUP,
        ),
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "Group",
            "system:nodes",
        ),
        (
            "kubeadm:get-nodes",
            "kubeadm:get-nodes",
            "Group",
            TOKEN_GROUP,
        ),
    ] {
        ensure(
            c,
            rbac,
            "ClusterRoleBinding",
            binding(name, role, kind, subject),
        )
        .await?;
    }
    ensure(
        c,
        rbac,
        "Role",
        json!({"apiVersion": rbac, "kind": "Role",
               "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo", "namespace": "kube-public"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cluster-info"], "verbs": ["get"]}]}),
    )
    .await?;
    ensure(
        c,
        rbac,
        "RoleBinding",
        json!({"apiVersion": rbac, "kind": "RoleBinding",
               "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo", "namespace": "kube-public"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kubeadm:bootstrap-signer-clusterinfo"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}]}),
    )
    .await?;
    let ca_path = dir.join("pki/ca.crt");
    let ca = std::fs::read_to_string(&ca_path)
        .with_context(|| format!("reading {}", ca_path.display()))?;
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://{master_ip}:6443\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\npreferences: {{}}\nusers: null\n",
        b64(&ca)
    );
    ensure(
        c,
        "v1",
        "ConfigMap",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "cluster-info", "namespace": "kube-public"},
               "data": {"kubeconfig": kubeconfig}}),
    )
    .await?;
    Ok(())
}

/// Whether a Node object's Ready condition is True.
pub fn node_ready(n: &Value) -> bool {
    n["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Waits (bounded, real time) for `want` Ready nodes, printing progress.
pub async fn wait_nodes_ready(c: &Client, want: usize, limit: Duration) -> anyhow::Result<()> {
    let clock = Clock::real();
    let deadline = clock.now() + limit;
    let info = c
        .registry()
        .by_api_version_kind("v1", "Node")
        .cloned()
        .context("nodes are not served")?;
    let api = c.resource(&info, None);
    let mut last = (usize::MAX, usize::MAX);
    loop {
        let list = api.list(&ListParams::default()).await;
        let (registered, ready) = match &list {
            Ok(l) => {
                let items = l["items"].as_array().cloned().unwrap_or_default();
                (items.len(), items.iter().filter(|n| node_ready(n)).count())
            }
            Err(_) => (0, 0),
        };
        if (registered, ready) != last {
            println!("      nodes: {registered} registered, {ready}/{want} Ready");
            last = (registered, ready);
        }
        if ready >= want {
            return Ok(());
        }
        if clock.now() > deadline {
            anyhow::bail!(
                "{ready}/{want} nodes Ready after {limit:?} ({registered} registered); see `ackemu logs` and the nodes' logs under the data dir"
            );
        }
        clock.sleep(Duration::from_millis(250)).await;
    }
}

/// `ackemu kubeinit`: what `ackemu up` writes into a fresh cluster once
/// its API server answers — the join token's objects ([`bootstrap`]) and
/// the add-ons — for clusters another launcher brings up
/// (`docker/setup.sh`). Existing objects are left alone.
#[derive(clap::Args, Debug)]
pub struct KubeinitArgs {
    /// The admin kubeconfig.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The cluster's directory (the CA is `<data-dir>/pki/ca.crt`).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The workers' join token, `<id>.<secret>`.
    #[arg(long)]
    pub token: String,
    /// The master's address: `cluster-info` names `https://<it>:6443`.
    #[arg(long)]
    pub master_ip: String,
    /// Also install the service mesh add-on (as `ackemu up --mesh`).
    #[arg(long)]
    pub mesh: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs `ackemu kubeinit`.
pub async fn run(a: KubeinitArgs) -> anyhow::Result<()> {
    let clock = Clock::new(a.common.clock_config()?);
    let kube = connect(&a.kubeconfig, &clock)?;
    bootstrap(&kube, &a.token, &a.master_ip, &a.data_dir)
        .await
        .context("creating the bootstrap token, RBAC and cluster-info")?;
    super::addons::install(&kube)
        .await
        .context("installing the add-ons")?;
    if a.mesh {
        super::mesh::install(&kube, &clock)
            .await
            .context("installing the service mesh add-on")?;
    }
    Ok(())
}
