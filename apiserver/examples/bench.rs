//! API server benchmark: pod create/get/list/watch throughput and
//! latency percentiles, on one or two stores side by side (e.g. ackemu-store
//! and a real etcd), with the ratios printed. Not a test: a command.
//!
//! ```text
//! cargo run --release -p ackemu-apiserver --example bench -- \
//!     --a 127.0.0.1:2379 --b 127.0.0.1:23790 --pods 2000 --list-pods 10000 --watchers 1000
//! ```

use ackemu_apiserver::Config;
use ackemu_base::Env;
use ackemu_base::clock::Clock;
use ackemu_kube::client::{Client, ClientConfig, ListParams};
use anyhow::Context as _;
use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug)]
struct Args {
    /// First store (etcd v3 API).
    #[arg(long)]
    a: String,
    /// Second store, compared with the first.
    #[arg(long)]
    b: Option<String>,
    /// Pods created (and read) for the write benchmark.
    #[arg(long, default_value_t = 2000)]
    pods: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Pods present for the LIST benchmark.
    #[arg(long, default_value_t = 10_000)]
    list_pods: usize,
    /// LISTs measured.
    #[arg(long, default_value_t = 20)]
    lists: usize,
    /// Concurrent watchers.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
}

#[derive(Default, Debug)]
struct Result {
    create_per_s: f64,
    create_p50_ms: f64,
    create_p99_ms: f64,
    get_p50_ms: f64,
    get_p99_ms: f64,
    list_p50_ms: f64,
    list_p99_ms: f64,
    watch_fanout_ms: f64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn pod(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "yes"}},
           "spec": {"automountServiceAccountToken": false,
                    "containers": [{"name": "app", "image": "registry.cn-hangzhou.aliyuncs.com/kube-easy/app:latest"}]}})
}

async fn run(store: &str, args: &Args) -> anyhow::Result<Result> {
    let clock = Clock::real();
    let env = Env::for_test(clock.clone());
    let dir = tempfile::tempdir()?;
    let mut cfg = Config::local(vec![store.to_owned()], dir.path().join("pki"));
    cfg.etcd_prefix = format!("/bench-{}", uuid::Uuid::new_v4());
    cfg.api.max_requests_in_flight = 4000;
    cfg.api.max_mutating_requests_in_flight = 2000;
    let server = ackemu_apiserver::start(cfg, &env).await?;
    let client = Client::new(
        ClientConfig::from_kubeconfig(&server.admin_kubeconfig.clone().context("kubeconfig")?)?,
        clock.clone(),
        env.tasks.clone(),
    )?;
    let sa = client.resource(
        client
            .registry()
            .preferred("", "serviceaccounts")
            .context("sa")?,
        Some("default"),
    );
    sa.create(
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
    )
    .await?;
    let pods = client.resource(
        client.registry().preferred("", "pods").context("pods")?,
        Some("default"),
    );
    let mut out = Result::default();

    // Creates, with `concurrency` writers.
    let start = clock.now();
    let mut lat = Vec::new();
    let per = args.pods.div_ceil(args.concurrency);
    let mut handles = Vec::new();
    for w in 0..args.concurrency {
        let pods = pods.clone();
        let clock = clock.clone();
        handles.push(env.tasks.spawn(format!("bench-writer-{w}"), async move {
            let mut l = Vec::new();
            for i in 0..per {
                let t = clock.now();
                pods.create(&pod(&format!("w{w}-{i}"))).await?;
                l.push(clock.now().duration_since(t).as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(l)
        }));
    }
    for h in handles {
        lat.extend(h.await??);
    }
    out.create_per_s = lat.len() as f64 / clock.now().duration_since(start).as_secs_f64();
    out.create_p50_ms = pct(&mut lat, 0.5);
    out.create_p99_ms = pct(&mut lat, 0.99);

    let mut lat = Vec::new();
    for i in 0..per.min(500) {
        let t = clock.now();
        pods.get(&format!("w0-{i}")).await?;
        lat.push(clock.now().duration_since(t).as_secs_f64() * 1000.0);
    }
    out.get_p50_ms = pct(&mut lat, 0.5);
    out.get_p99_ms = pct(&mut lat, 0.99);

    // Top up to list_pods, then LIST everything (consistent read from the cache).
    let have = per * args.concurrency;
    for i in have..args.list_pods {
        pods.create(&pod(&format!("l-{i}"))).await?;
    }
    let mut lat = Vec::new();
    for _ in 0..args.lists {
        let t = clock.now();
        let v = pods.list(&ListParams::default()).await?;
        lat.push(clock.now().duration_since(t).as_secs_f64() * 1000.0);
        anyhow::ensure!(
            v["items"].as_array().map(Vec::len).unwrap_or(0) >= args.list_pods,
            "short list"
        );
    }
    out.list_p50_ms = pct(&mut lat, 0.5);
    out.list_p99_ms = pct(&mut lat, 0.99);

    // Watch fan-out: one change reaches every watcher.
    let rv = pods
        .list(&ListParams {
            limit: Some(1),
            ..Default::default()
        })
        .await?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let mut streams = Vec::new();
    for _ in 0..args.watchers {
        let p = ListParams {
            resource_version: Some(rv.clone()),
            field_selector: Some("metadata.name=w0-0".into()),
            ..Default::default()
        };
        streams.push(pods.watch(&p, 16).await?);
    }
    let t = clock.now();
    pods.patch(
        "w0-0",
        "",
        ackemu_kube::client::PatchType::Merge,
        &json!({"metadata": {"labels": {"touched": "yes"}}}),
    )
    .await?;
    for mut s in streams {
        s.recv().await.context("watch event")??;
    }
    out.watch_fanout_ms = clock.now().duration_since(t).as_secs_f64() * 1000.0;
    env.tasks.token().cancel();
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let a = run(&args.a, &args).await?;
    let b = match &args.b {
        Some(b) => Some(run(b, &args).await?),
        None => None,
    };
    let rows = [
        (
            "create/s",
            a.create_per_s,
            b.as_ref().map(|b| b.create_per_s),
        ),
        (
            "create p50 ms",
            a.create_p50_ms,
            b.as_ref().map(|b| b.create_p50_ms),
        ),
        (
            "create p99 ms",
            a.create_p99_ms,
            b.as_ref().map(|b| b.create_p99_ms),
        ),
        ("get p50 ms", a.get_p50_ms, b.as_ref().map(|b| b.get_p50_ms)),
        ("get p99 ms", a.get_p99_ms, b.as_ref().map(|b| b.get_p99_ms)),
        (
            "list p50 ms",
            a.list_p50_ms,
            b.as_ref().map(|b| b.list_p50_ms),
        ),
        (
            "list p99 ms",
            a.list_p99_ms,
            b.as_ref().map(|b| b.list_p99_ms),
        ),
        (
            "watch fan-out ms",
            a.watch_fanout_ms,
            b.as_ref().map(|b| b.watch_fanout_ms),
        ),
    ];
    println!(
        "{:<18} {:>12} {:>12} {:>8}",
        "metric",
        args.a,
        args.b.clone().unwrap_or_default(),
        "b/a"
    );
    for (name, x, y) in rows {
        match y {
            Some(y) => println!(
                "{name:<18} {x:>12.2} {y:>12.2} {:>8.2}",
                if x == 0.0 { 0.0 } else { y / x }
            ),
            None => println!("{name:<18} {x:>12.2}"),
        }
    }
    Ok(())
}
