//! `ackemu up | down | status | logs`: a local cluster as detached
//! processes on this machine, described by `<data-dir>/cluster.json`.
//!
//! Today the launcher starts what has landed: three store members, the
//! fake cloud and the API server, and writes an admin kubeconfig. The node
//! agents, controllers and add-ons join it as their components land
//! (ARCHITECTURE.md).

pub mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ackemu_base::CommonArgs;
use ackemu_base::clock::{Clock, ClockConfig};
use anyhow::Context as _;
use clap::Args;
use serde::{Deserialize, Serialize};

use process::{alive, binary, free_port, spawn, stop, wait_ready};

/// Where a cluster lives.
#[derive(Args, Debug, Clone)]
pub struct DataDirArg {
    /// The cluster's directory (state, PKI, logs, kubeconfig).
    #[arg(long, env = "ACKEMU_DATA_DIR", default_value = ".ackemu")]
    pub data_dir: PathBuf,
}

/// `ackemu up`.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Cluster time runs this many times faster than real time (new clusters only).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// API server port on 127.0.0.1 (new clusters only; 0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    pub apiserver_port: u16,
    /// How long to wait for each component to become ready (real time).
    #[arg(long, default_value = "60s", value_parser = ackemu_base::clock::parse_duration)]
    pub ready_timeout: Duration,
}

/// One daemon of the cluster.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Proc {
    /// Binary name (`ackemu-store`, …).
    pub binary: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Admin port address (`/readyz`, FaultService).
    pub admin: String,
    /// Last pid.
    pub pid: Option<u32>,
}

/// `cluster.json`: everything needed to resume, inspect or stop a cluster.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ClusterState {
    /// Shared by every process: cluster time = (now - epoch) × scale.
    pub epoch_unix_ms: i64,
    /// Time scale.
    pub time_scale: f64,
    /// API server address.
    pub apiserver: String,
    /// Store client endpoints.
    pub store_endpoints: Vec<String>,
    /// Cloud API endpoint.
    pub cloud_endpoint: String,
    /// Daemons by name, in start order.
    pub processes: Vec<(String, Proc)>,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("cluster.json")
}

/// Read a cluster's state, if it exists.
pub fn load(dir: &Path) -> anyhow::Result<Option<ClusterState>> {
    let p = state_path(dir);
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(Some(
            serde_json::from_str(&t).with_context(|| format!("parsing {}", p.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

fn save(dir: &Path, st: &ClusterState) -> anyhow::Result<()> {
    let p = state_path(dir);
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(st)?)?;
    std::fs::rename(&tmp, &p)?;
    Ok(())
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(format!("{name}.log"))
}

/// A fresh cluster description: ports, flags, data paths.
fn plan(dir: &Path, args: &UpArgs) -> anyhow::Result<ClusterState> {
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        anyhow::bail!(
            "invalid --time-scale {}: expected a positive number",
            args.time_scale
        );
    }
    let clock = Clock::new(ClockConfig {
        time_scale: args.time_scale,
        ..ClockConfig::real_now()
    });
    let clock_flags = CommonArgs::clock_flags(&clock);
    let d = |p: &str| dir.join(p).display().to_string();
    let mut processes = Vec::new();
    let admin = || -> anyhow::Result<String> { Ok(format!("127.0.0.1:{}", free_port()?)) };

    let names = ["store-0", "store-1", "store-2"];
    let clients: Vec<String> = (0..3)
        .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<Result<_, _>>()?;
    let peers: Vec<String> = (0..3)
        .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<Result<_, _>>()?;
    let initial_cluster = names
        .iter()
        .zip(&peers)
        .map(|(n, p)| format!("{n}=http://{p}"))
        .collect::<Vec<_>>()
        .join(",");
    for i in 0..3 {
        let a = admin()?;
        let mut argv = vec![
            format!("--name={}", names[i]),
            format!("--data-dir={}", d(&format!("store/{}", names[i]))),
            format!("--listen-client-urls=http://{}", clients[i]),
            format!("--advertise-client-urls=http://{}", clients[i]),
            format!("--listen-peer-urls=http://{}", peers[i]),
            format!("--initial-advertise-peer-urls=http://{}", peers[i]),
            format!("--initial-cluster={initial_cluster}"),
            "--initial-cluster-state=new".into(),
            format!("--admin-listen={a}"),
        ];
        argv.extend(clock_flags.iter().cloned());
        processes.push((
            names[i].to_string(),
            Proc {
                binary: "ackemu-store".into(),
                args: argv,
                admin: a,
                pid: None,
            },
        ));
    }

    let cloud_grpc = format!("127.0.0.1:{}", free_port()?);
    let a = admin()?;
    let mut argv = vec![
        format!("--data-dir={}", d("cloudsim")),
        format!("--grpc-listen={cloud_grpc}"),
        format!("--metadata-listen=127.0.0.1:{}", free_port()?),
        format!("--registry-listen=127.0.0.1:{}", free_port()?),
        format!("--admin-profile-file={}", d("cloud-profile.json")),
        format!("--admin-listen={a}"),
    ];
    argv.extend(clock_flags.iter().cloned());
    processes.push((
        "cloudsim".into(),
        Proc {
            binary: "ackemu-cloudsim".into(),
            args: argv,
            admin: a,
            pid: None,
        },
    ));

    let port = if args.apiserver_port == 0 {
        free_port()?
    } else {
        args.apiserver_port
    };
    let apiserver = format!("127.0.0.1:{port}");
    let a = admin()?;
    let mut argv = vec![
        format!("--secure-listen={apiserver}"),
        format!("--store-endpoints={}", clients.join(",")),
        format!("--pki-dir={}", d("pki")),
        format!("--admin-kubeconfig={}", d("kubeconfig")),
        format!("--admin-listen={a}"),
    ];
    argv.extend(clock_flags.iter().cloned());
    processes.push((
        "apiserver".into(),
        Proc {
            binary: "ackemu-apiserver".into(),
            args: argv,
            admin: a,
            pid: None,
        },
    ));

    Ok(ClusterState {
        epoch_unix_ms: clock.epoch_unix_ms(),
        time_scale: args.time_scale,
        apiserver,
        store_endpoints: clients,
        cloud_endpoint: format!("http://{cloud_grpc}"),
        processes,
    })
}

/// `ackemu up`: start (or resume) the cluster in the data dir.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let dir = &args.dir.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut st = match load(dir)? {
        Some(st) => {
            println!("resuming the cluster in {}", dir.display());
            st
        }
        None => {
            println!("creating a cluster in {}", dir.display());
            let st = plan(dir, &args)?;
            save(dir, &st)?;
            st
        }
    };
    let total = st.processes.len();
    for i in 0..total {
        let (name, p) = st.processes[i].clone();
        let log = log_path(dir, &name);
        if let Some(pid) = p.pid.filter(|pid| alive(*pid)) {
            println!("[{}/{total}] {name} already running (pid {pid})", i + 1);
            continue;
        }
        let bin = binary(&p.binary)?;
        let pid = spawn(&bin, &p.args, &log)?;
        st.processes[i].1.pid = Some(pid);
        save(dir, &st)?;
        println!(
            "[{}/{total}] started {name} (pid {pid}), log {}",
            i + 1,
            log.display()
        );
        // The stores elect together: wait for them as a group.
        if name.starts_with("store-")
            && st
                .processes
                .get(i + 1)
                .is_some_and(|(n, _)| n.starts_with("store-"))
        {
            continue;
        }
        for (n, q) in st.processes[..=i]
            .iter()
            .filter(|(n, _)| n == &name || (name.starts_with("store-") && n.starts_with("store-")))
        {
            wait_ready(
                n,
                q.pid.unwrap_or(0),
                &q.admin,
                args.ready_timeout,
                &log_path(dir, n),
            )
            .await?;
        }
        if name.starts_with("store-") {
            wait_store_quorum(&st.store_endpoints, args.ready_timeout).await?;
        }
        println!("      {name} ready");
    }
    let kubeconfig = dir.join("kubeconfig");
    println!("\ncluster is up: API server https://{}", st.apiserver);
    println!(
        "  export KUBECONFIG={}",
        std::fs::canonicalize(&kubeconfig)
            .unwrap_or(kubeconfig)
            .display()
    );
    println!("  kubectl get namespaces");
    println!(
        "  ackemu status --data-dir {}   ackemu down --data-dir {}",
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// Wait (bounded, real time) until a linearizable read succeeds through
/// every store endpoint: a leader exists and a quorum answers.
async fn wait_store_quorum(endpoints: &[String], limit: Duration) -> anyhow::Result<()> {
    use ackemu_proto::etcdserverpb::RangeRequest;
    use ackemu_proto::etcdserverpb::kv_client::KvClient;
    let clock = Clock::real();
    let deadline = clock.now() + limit;
    for ep in endpoints {
        let mut last;
        loop {
            let attempt = async {
                let mut c = KvClient::connect(format!("http://{ep}"))
                    .await
                    .map_err(|e| e.to_string())?;
                c.range(RangeRequest {
                    key: b"/ackemu/health".to_vec(),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.message().to_string())
            };
            match clock.timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => last = e,
                Err(_) => last = "read timed out".into(),
            }
            if clock.now() > deadline {
                anyhow::bail!("store at {ep} has no quorum after {limit:?}: {last}");
            }
            clock.sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// `ackemu status`.
pub async fn status(dir: DataDirArg) -> anyhow::Result<()> {
    let st = load(&dir.data_dir)?
        .with_context(|| format!("no cluster in {}", dir.data_dir.display()))?;
    println!(
        "{:<12} {:>8} {:<8} {:<22} READY",
        "COMPONENT", "PID", "STATE", "ADMIN"
    );
    for (name, p) in &st.processes {
        let running = p.pid.is_some_and(alive);
        let ready = if running {
            match process::http_status(&p.admin, "/readyz").await {
                Some(200) => "ready".to_string(),
                Some(code) => format!("not ready ({code})"),
                None => "no answer".to_string(),
            }
        } else {
            "-".into()
        };
        println!(
            "{:<12} {:>8} {:<8} {:<22} {}",
            name,
            p.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            if running { "running" } else { "stopped" },
            p.admin,
            ready
        );
    }
    println!(
        "\nAPI server https://{}  time-scale {}",
        st.apiserver, st.time_scale
    );
    Ok(())
}

/// `ackemu logs <component>`.
#[derive(Args, Debug, Clone)]
pub struct LogsArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Component name as `ackemu status` lists it (e.g. apiserver, store-0).
    pub component: String,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
}

/// Print a component's log.
pub fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let st = load(&args.dir.data_dir)?
        .with_context(|| format!("no cluster in {}", args.dir.data_dir.display()))?;
    if !st.processes.iter().any(|(n, _)| n == &args.component) {
        let names: Vec<&str> = st.processes.iter().map(|(n, _)| n.as_str()).collect();
        anyhow::bail!(
            "no component {:?}: expected one of {}",
            args.component,
            names.join(", ")
        );
    }
    let path = log_path(&args.dir.data_dir, &args.component);
    let text = match args.tail {
        Some(n) => process::tail(&path, n),
        None => {
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
        }
    };
    println!("{text}");
    Ok(())
}

/// `ackemu down`.
#[derive(Args, Debug, Clone)]
pub struct DownArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Also delete the data directory (state, PKI, logs).
    #[arg(long)]
    pub purge: bool,
}

/// Stop every daemon, last started first.
pub async fn down(args: DownArgs) -> anyhow::Result<()> {
    let dir = &args.dir.data_dir;
    let Some(mut st) = load(dir)? else {
        anyhow::bail!("no cluster in {}", dir.display());
    };
    let mut stuck = BTreeMap::new();
    for i in (0..st.processes.len()).rev() {
        let (name, p) = st.processes[i].clone();
        if let Some(pid) = p.pid {
            if stop(pid, Duration::from_secs(10)).await {
                println!("stopped {name} (pid {pid})");
                st.processes[i].1.pid = None;
            } else {
                stuck.insert(name, pid);
            }
        }
    }
    save(dir, &st)?;
    if !stuck.is_empty() {
        anyhow::bail!("could not stop {stuck:?}");
    }
    if args.purge {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        println!("removed {}", dir.display());
    }
    Ok(())
}
