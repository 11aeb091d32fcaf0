//! End-to-end scheduling throughput through the API server: a real etcd, the
//! real `ackemu-apiserver` and the `ackemu-scheduler` binary, with many
//! hollow Node objects (no kubelet) and pending pods created before the
//! scheduler starts. The scheduler lists them, then every pod takes a full
//! cycle and a `pods/binding` POST; the example watches the bindings and
//! prints pods/s between the first and the last (and the node/pod creation
//! rate, which bounds what an API server this size can take).
//!
//! ```text
//! cargo build --release -p ackemu-apiserver --bin ackemu-apiserver
//! cargo build --release -p ackemu-scheduler --bin ackemu-scheduler --example e2e
//! target/release/examples/e2e [--nodes 1000,5000] [--pods 2000] [--spread]
//! ```
//!
//! Binaries are looked up next to the example (same profile), then in the
//! other profile. `--spread` makes the pods replicas of ReplicaSets behind
//! Services so default topology spreading scores them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ackemu_base::Env;
use ackemu_base::clock::Clock;
use ackemu_kube::client::{Client, ClientConfig, ListParams};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

struct Args {
    nodes: Vec<usize>,
    pods: usize,
    spread: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        nodes: vec![1000],
        pods: 2000,
        spread: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--nodes" => {
                a.nodes = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--nodes expects a comma-separated list of counts")?;
            }
            "--pods" => a.pods = value()?.parse().context("--pods expects a count")?,
            "--spread" => a.spread = true,
            other => bail!("unknown flag {other:?}: expected --nodes, --pods, --spread"),
        }
    }
    Ok(a)
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// `name` in this example's profile directory, else the other profile's.
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/e2e
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the example's target directory")?;
    let target = profile_dir.parent().context("the target directory")?;
    for dir in [
        profile_dir.to_path_buf(),
        target.join("release"),
        target.join("debug"),
    ] {
        let p = dir.join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "{name} not found under {}: build it first (cargo build --release -p {name} --bin {name})",
        target.display()
    )
}

async fn poll<T, F, Fut>(clock: &Clock, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = clock.now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(v)) = f().await {
            return Ok(v);
        }
        if clock.now() > deadline {
            bail!("timed out waiting for {what}");
        }
        clock.sleep(Duration::from_millis(100)).await;
    }
}

/// POSTs `objects` to `path` with `parallel` requests in flight.
async fn create_all(
    env: &Env,
    client: &Client,
    path: &str,
    objects: Vec<Value>,
    parallel: usize,
) -> anyhow::Result<()> {
    let (done_tx, mut done_rx) = mpsc::channel::<anyhow::Result<()>>(parallel);
    let chunk = objects.len().div_ceil(parallel).max(1);
    let mut workers = 0;
    for part in objects.chunks(chunk) {
        workers += 1;
        let (client, path, done) = (client.clone(), path.to_string(), done_tx.clone());
        let part = part.to_vec();
        env.tasks.spawn("create objects", async move {
            let mut r = Ok(());
            for o in part {
                if let Err(e) = client
                    .request(
                        "POST",
                        &path,
                        Some(("application/json", o.to_string().into_bytes())),
                    )
                    .await
                {
                    r = Err(anyhow::anyhow!("creating an object at {path}: {e}"));
                    break;
                }
            }
            let _ = done.send(r).await;
        });
    }
    for _ in 0..workers {
        done_rx.recv().await.context("a creating task vanished")??;
    }
    Ok(())
}

fn node(i: usize) -> Value {
    let name = format!("hollow-{i:05}");
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
        "status": {
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
}

const WORKLOADS: usize = 50;

fn pod(i: usize, spread: bool) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": "default"},
        "spec": {"automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": "registry.local/app:1",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}});
    if spread {
        let w = i % WORKLOADS;
        p["metadata"]["labels"] = json!({"app": format!("app-{w}")});
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": format!("app-{w}-1"), "uid": format!("00000000-0000-0000-0000-{w:012}"),
            "controller": true}]);
    }
    p
}

async fn run(nodes: usize, args: &Args) -> anyhow::Result<()> {
    let clock = Clock::real();
    let env = Env::for_test(clock.clone());
    let dir = tempfile::tempdir()?;
    let (client_port, peer) = (free_port(), free_port());
    let endpoint = format!("127.0.0.1:{client_port}");
    let _etcd = Proc(
        Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &format!("http://{endpoint}")])
            .args(["--advertise-client-urls", &format!("http://{endpoint}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args([
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer}"),
            ])
            .args(["--log-level", "error", "--quota-backend-bytes=8589934592"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting etcd")?,
    );
    let kubeconfig = dir.path().join("admin.kubeconfig");
    let log = std::fs::File::create(dir.path().join("apiserver.log"))?;
    let _apiserver = Proc(
        Command::new(binary("ackemu-apiserver")?)
            .arg(format!("--secure-listen=127.0.0.1:{}", free_port()))
            .arg(format!("--store-endpoints={endpoint}"))
            .arg(format!("--pki-dir={}", dir.path().join("pki").display()))
            .arg(format!("--admin-kubeconfig={}", kubeconfig.display()))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting ackemu-apiserver")?,
    );
    let kc = kubeconfig.clone();
    let cfg = poll(&clock, "the admin kubeconfig", || {
        let kc = kc.clone();
        async move {
            Ok(kc
                .exists()
                .then(|| ClientConfig::from_kubeconfig(&kc))
                .transpose()?)
        }
    })
    .await?;
    let client = Client::new(cfg, clock.clone(), env.tasks.clone())?;
    poll(&clock, "the API server", || {
        let c = client.clone();
        async move {
            Ok(c.request("GET", "/api/v1/namespaces/default", None)
                .await
                .ok()
                .map(|_| ()))
        }
    })
    .await?;
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": "default"}});
    create_all(
        &env,
        &client,
        "/api/v1/namespaces/default/serviceaccounts",
        vec![sa],
        1,
    )
    .await?;
    if args.spread {
        let mut objs = Vec::new();
        let mut rss = Vec::new();
        for w in 0..WORKLOADS {
            objs.push(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("app-{w}"), "namespace": "default"},
                "spec": {"selector": {"app": format!("app-{w}")}, "ports": [{"port": 80}]}}));
            rss.push(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("app-{w}-1"), "namespace": "default"},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": format!("app-{w}")}},
                    "template": {"metadata": {"labels": {"app": format!("app-{w}")}},
                        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]}}}}));
        }
        create_all(
            &env,
            &client,
            "/api/v1/namespaces/default/services",
            objs,
            8,
        )
        .await?;
        create_all(
            &env,
            &client,
            "/apis/apps/v1/namespaces/default/replicasets",
            rss,
            8,
        )
        .await?;
    }

    let t = clock.now();
    create_all(
        &env,
        &client,
        "/api/v1/nodes",
        (0..nodes).map(node).collect(),
        16,
    )
    .await?;
    let node_secs = clock.now().duration_since(t).as_secs_f64();
    let t = clock.now();
    create_all(
        &env,
        &client,
        "/api/v1/namespaces/default/pods",
        (0..args.pods).map(|i| pod(i, args.spread)).collect(),
        16,
    )
    .await?;
    let pod_secs = clock.now().duration_since(t).as_secs_f64();

    // Watch the bindings from here on.
    let pods_api = client.api::<ackemu_kube::api::core::v1::Pod>(Some("default"))?;
    let list = pods_api
        .dynamic()
        .list(&ListParams {
            limit: Some(1),
            ..Default::default()
        })
        .await?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut events = pods_api
        .dynamic()
        .watch(
            &ListParams {
                resource_version: Some(rv),
                timeout_seconds: Some(3600),
                ..Default::default()
            },
            4096,
        )
        .await?;

    let slog = std::fs::File::create(dir.path().join("scheduler.log"))?;
    let start = clock.now();
    let _scheduler = Proc(
        Command::new(binary("ackemu-scheduler")?)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--leader-elect=false")
            .stdout(slog.try_clone()?)
            .stderr(slog)
            .spawn()
            .context("starting ackemu-scheduler")?,
    );
    let mut bound = std::collections::HashSet::new();
    let mut first = None;
    let deadline = clock.now() + Duration::from_secs(600);
    while bound.len() < args.pods {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            () = clock.sleep_until(deadline) => bail!("only {} of {} pods bound in 600 s", bound.len(), args.pods),
        };
        let Some(ev) = ev else {
            bail!("the pod watch ended after {} bindings", bound.len())
        };
        let ev = ev?;
        if ev.object["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
            && bound.insert(
                ev.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
            && first.is_none()
        {
            first = Some(clock.now());
        }
    }
    let end = clock.now();
    let first = first.unwrap_or(end);
    let steady = end.duration_since(first).as_secs_f64();
    let total = end.duration_since(start).as_secs_f64();
    let rate = (args.pods.saturating_sub(1)) as f64 / steady.max(f64::MIN_POSITIVE);
    println!(
        "nodes={nodes} pods={} spread={} node_create_per_sec={:.0} pod_create_per_sec={:.0} \
         startup_to_first_bind_ms={} bind_phase_ms={} pods_per_sec={rate:.0} \
         pods_per_sec_incl_startup={:.0} sched_vs_pod_create_ratio={:.2}",
        args.pods,
        args.spread,
        nodes as f64 / node_secs.max(f64::MIN_POSITIVE),
        args.pods as f64 / pod_secs.max(f64::MIN_POSITIVE),
        first.duration_since(start).as_millis(),
        (steady * 1000.0) as u64,
        args.pods as f64 / total.max(f64::MIN_POSITIVE),
        rate / (args.pods as f64 / pod_secs.max(f64::MIN_POSITIVE)),
    );
    env.tasks.token().cancel();
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    for &n in &args.nodes {
        run(n, &args).await?;
    }
    Ok(())
}
