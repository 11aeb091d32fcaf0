//! Benchmark: the same workload against a 3-member `ackemu-store` cluster
//! and a 3-member real etcd (the `etcd` on PATH, Debian's 3.4), started side
//! by side on loopback in one run. Prints throughput, p50/p99 latency and
//! RSS as a table with ratios; `--check-perf` also runs `etcdctl check perf`
//! against both.
//!
//! ```text
//! cargo build --release -p ackemu-store --bin ackemu-store --example bench
//! target/release/examples/bench --seconds 5 --clients 1,100,1000
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_proto::etcdserverpb::kv_client::KvClient;
use ackemu_proto::etcdserverpb::{PutRequest, RangeRequest};
use anyhow::{Context as _, Result, bail};
use clap::Parser;
use parking_lot::Mutex;
use tonic::transport::Channel;

#[derive(Parser, Debug)]
struct Args {
    /// Seconds per measured phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Client counts for the write phases.
    #[arg(long, default_value = "1,100,1000", value_delimiter = ',')]
    clients: Vec<usize>,
    /// Clients for the read phases.
    #[arg(long, default_value_t = 100)]
    read_clients: usize,
    /// gRPC connections shared by the clients.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,
    /// Also run `etcdctl check perf` against both clusters (about a minute each).
    #[arg(long)]
    check_perf: bool,
    /// The ackemu-store binary (default: next to this example's directory).
    #[arg(long)]
    store_bin: Option<PathBuf>,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Cluster {
    name: &'static str,
    procs: Vec<Proc>,
    endpoints: Vec<String>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start(kind: &'static str, bin: &Path, dir: &Path) -> Result<Cluster> {
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<Result<_>>()?;
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
        .collect();
    let mut procs = Vec::new();
    for (i, (c, p)) in ports.iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("{kind}-m{i}.log")))?;
        let mut cmd = Command::new(bin);
        cmd.args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(dir.join(format!("{kind}-m{i}")))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{c}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{c}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{p}"),
            ])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        procs.push(Proc(
            cmd.spawn()
                .with_context(|| format!("starting {}", bin.display()))?,
        ));
    }
    Ok(Cluster {
        name: kind,
        procs,
        endpoints: ports
            .iter()
            .map(|(c, _)| format!("127.0.0.1:{c}"))
            .collect(),
    })
}

async fn channels(c: &Cluster, n: usize) -> Result<Vec<KvClient<Channel>>> {
    let mut out = Vec::new();
    for i in 0..n.max(1) {
        let ep = tonic::transport::Endpoint::from_shared(format!(
            "http://{}",
            c.endpoints[i % c.endpoints.len()]
        ))?;
        out.push(KvClient::new(ep.connect().await?));
    }
    Ok(out)
}

async fn wait_ready(c: &Cluster, clock: &Clock) -> Result<()> {
    let deadline = clock.now() + Duration::from_secs(30);
    while clock.now() < deadline {
        if let Ok(mut kvs) = channels(c, 3).await {
            let mut ok = true;
            for kv in &mut kvs {
                ok &= kv
                    .range(RangeRequest {
                        key: b"ready".to_vec(),
                        ..Default::default()
                    })
                    .await
                    .is_ok();
            }
            if ok {
                return Ok(());
            }
        }
        clock.sleep(Duration::from_millis(200)).await;
    }
    bail!("{} did not become ready", c.name)
}

#[derive(Clone, Copy)]
enum Work {
    Write,
    LinearizableRead,
    SerializableRead,
}

struct Stats {
    errors: usize,
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn phase(
    c: &Cluster,
    work: Work,
    clients: usize,
    args: &Args,
    clock: &Clock,
) -> Result<Stats> {
    let kvs = channels(c, args.conns.min(clients)).await?;
    let lat: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = clock.now();
    let end = start + Duration::from_secs(args.seconds);
    let tasks = ackemu_base::tasks::Tasks::new(clock.clone());
    let value = vec![b'v'; args.value_bytes];
    let mut handles = Vec::new();
    for id in 0..clients {
        let mut kv = kvs[id % kvs.len()].clone();
        let (lat, errors, clock, value) =
            (lat.clone(), errors.clone(), clock.clone(), value.clone());
        handles.push(tasks.spawn("bench/client", async move {
            let mut mine = Vec::new();
            let mut i = 0u64;
            while clock.now() < end {
                let t0 = clock.now();
                let r = match work {
                    Work::Write => kv
                        .put(PutRequest {
                            key: format!("bench/{id}/{}", i % 64).into_bytes(),
                            value: value.clone(),
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    Work::LinearizableRead | Work::SerializableRead => kv
                        .range(RangeRequest {
                            key: format!("bench/{}/0", id % 100).into_bytes(),
                            serializable: matches!(work, Work::SerializableRead),
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                };
                match r {
                    Ok(()) => mine.push(clock.now().saturating_duration_since(t0)),
                    Err(_) => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                i += 1;
            }
            lat.lock().extend(mine);
        }));
    }
    for h in handles {
        h.await?;
    }
    let elapsed = clock.now().saturating_duration_since(start).as_secs_f64();
    let mut l = lat.lock().clone();
    l.sort_unstable();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e3)
    };
    Ok(Stats {
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        ops_per_s: l.len() as f64 / elapsed,
        p50_ms: pct(0.50).unwrap_or(f64::NAN),
        p99_ms: pct(0.99).unwrap_or(f64::NAN),
    })
}

fn rss_mib(c: &Cluster) -> f64 {
    c.procs
        .iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{}/status", p.0.id())).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 1024.0
}

fn check_perf(c: &Cluster) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &c.endpoints.join(","), "check", "perf"])
        .output();
    match out {
        // Keep the verdict lines, not the progress bar.
        Ok(o) => format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .split(['\r', '\n'])
        .filter_map(|l| {
            l.find("PASS")
                .or_else(|| l.find("FAIL"))
                .map(|i| l[i..].to_string())
        })
        .collect::<Vec<_>>()
        .join("\n"),
        Err(e) => format!("etcdctl check perf could not run: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let clock = Clock::real();
    let store_bin = match &args.store_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("ackemu-store"))
            .context("locating ackemu-store next to the example")?,
    };
    let dir = tempfile::tempdir()?;
    let ours = start("ackemu-store", &store_bin, dir.path())?;
    let etcd = start("etcd", Path::new("etcd"), dir.path())?;
    wait_ready(&ours, &clock).await?;
    wait_ready(&etcd, &clock).await?;

    let mut phases: Vec<(String, Work, usize)> = args
        .clients
        .iter()
        .map(|n| (format!("write, {n} clients"), Work::Write, *n))
        .collect();
    phases.push((
        format!("linearizable read, {} clients", args.read_clients),
        Work::LinearizableRead,
        args.read_clients,
    ));
    phases.push((
        format!("serializable read, {} clients", args.read_clients),
        Work::SerializableRead,
        args.read_clients,
    ));

    println!(
        "{:<34} {:>12} {:>12} {:>7} {:>17} {:>17}",
        "workload", "ackemu op/s", "etcd op/s", "ratio", "ackemu p50/p99 ms", "etcd p50/p99 ms"
    );
    for (name, work, clients) in &phases {
        let a = phase(&ours, *work, *clients, &args, &clock).await?;
        let e = phase(&etcd, *work, *clients, &args, &clock).await?;
        println!(
            "{:<34} {:>12.0} {:>12.0} {:>7.2} {:>8.2}/{:<8.2} {:>8.2}/{:<8.2}{}",
            name,
            a.ops_per_s,
            e.ops_per_s,
            a.ops_per_s / e.ops_per_s,
            a.p50_ms,
            a.p99_ms,
            e.p50_ms,
            e.p99_ms,
            if a.errors + e.errors > 0 {
                format!("  (errors: ackemu {}, etcd {})", a.errors, e.errors)
            } else {
                String::new()
            },
        );
    }
    println!(
        "{:<34} {:>12.1} {:>12.1} {:>7.2}",
        "RSS MiB (3 members)",
        rss_mib(&ours),
        rss_mib(&etcd),
        rss_mib(&ours) / rss_mib(&etcd)
    );
    if args.check_perf {
        for c in [&ours, &etcd] {
            println!(
                "--- etcdctl check perf against {} ---\n{}",
                c.name,
                check_perf(c)
            );
        }
    }
    Ok(())
}
