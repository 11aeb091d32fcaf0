//! `ackemu up | down | status | logs`: a local cluster as detached
//! processes on this machine, described by `<data-dir>/cluster.json`.
//!
//! The layout is ACK's: three store members on the host (their peers and
//! clients talk over the loopback underlay), the fake cloud with the local
//! hypervisor, a VPC whose master ECS instance (a network namespace on the
//! fabric) runs the API server, controller manager and scheduler, and
//! workers created by an ESS scaling group whose UserData joins them with
//! a bootstrap token. The host reaches the master only through the
//! loopback forwards of `ackemu forward`.

pub mod addons;
pub mod forward;
pub mod kubeinit;
pub mod mesh;
pub mod node;
pub mod process;
pub mod provision;
pub mod supervise;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ackemu_base::CommonArgs;
use ackemu_base::clock::{Clock, ClockConfig};
use anyhow::Context as _;
use clap::Args;
use serde::{Deserialize, Serialize};

pub use node::node_admin;
use process::{alive, binary, spawn, stop, wait_ready};

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
    /// Worker nodes (ECS instances of the workers' scaling group; new clusters only).
    #[arg(long, default_value_t = 3)]
    pub nodes: u32,
    /// Cluster time runs this many times faster than real time (new clusters only).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// API server port on 127.0.0.1 (new clusters only; 0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    pub apiserver_port: u16,
    /// The store's backend space quota in bytes (`--quota-backend-bytes`;
    /// 0: etcd's default of 2 GiB; new clusters only).
    #[arg(long, default_value_t = 0)]
    pub store_quota_bytes: u64,
    /// How long to wait for each component to become ready (real time).
    #[arg(long, default_value = "120s", value_parser = ackemu_base::clock::parse_duration)]
    pub ready_timeout: Duration,
    /// Also install the service mesh add-on (Istio 1.x's Pilot, Citadel,
    /// Galley and sidecar injection in `istio-system`).
    #[arg(long)]
    pub mesh: bool,
    /// Run the cluster autoscaler on the workers' scaling group (ACK's
    /// node autoscaling): Pending pods scale it out, and nodes whose
    /// reservation stays under the threshold are drained and released.
    #[arg(long)]
    pub autoscaler: bool,
}

/// One daemon of the cluster.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Proc {
    /// Binary name (`ackemu-store`, …).
    pub binary: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Admin port address as the host reaches it (`/readyz`, FaultService).
    pub admin: String,
    /// Last pid.
    pub pid: Option<u32>,
    /// The instance namespace it runs in (`None`: the host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

impl Proc {
    /// The components in an instance's namespace are the master's control
    /// plane: static pods, restarted when they exit (`ackemu supervise`),
    /// signalled as a process group.
    pub fn supervised(&self) -> bool {
        self.netns.is_some()
    }
}

/// `cluster.json`: everything needed to resume, inspect or stop a cluster.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ClusterState {
    /// Shared by every process: cluster time = (now - epoch) × scale.
    pub epoch_unix_ms: i64,
    /// Time scale.
    pub time_scale: f64,
    /// API server address as the host reaches it (a forward).
    pub apiserver: String,
    /// Store client endpoints.
    pub store_endpoints: Vec<String>,
    /// Cloud API endpoint.
    pub cloud_endpoint: String,
    /// Namespaces of this cluster's instances start with this.
    #[serde(default)]
    pub netns_prefix: String,
    /// Unique per cluster: RAM names, bootstrap token id.
    #[serde(default)]
    pub suffix: String,
    /// Worker nodes asked for.
    #[serde(default)]
    pub nodes: u32,
    /// The workers' bootstrap token (`<id>.<secret>`).
    #[serde(default)]
    pub bootstrap_token: String,
    /// The cloud resources, once created.
    #[serde(default)]
    pub cloud: Option<provision::CloudIds>,
    /// The cluster autoscaler's admin address (it starts once the
    /// workers' scaling group exists; its forward is planned before).
    #[serde(default)]
    pub autoscaler_admin: Option<String>,
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

/// Free loopback ports, held until the plan is written so that no two
/// picks are the same port (a port let go can be handed out again).
#[derive(Default)]
struct Ports(Vec<std::net::TcpListener>);

impl Ports {
    fn next(&mut self) -> anyhow::Result<u16> {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        self.0.push(l);
        Ok(port)
    }

    fn addr(&mut self) -> anyhow::Result<String> {
        Ok(format!("127.0.0.1:{}", self.next()?))
    }
}

/// Why the VPC data plane cannot run here, if it cannot.
fn dataplane_unavailable() -> Option<String> {
    if !nix_is_root() {
        return Some("the VPC data plane (network namespaces, TUN) needs root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    None
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A short id for this cluster, from its directory: namespace prefixes
/// and RAM names stay unique when several clusters share a machine.
fn cluster_suffix(dir: &Path) -> String {
    use std::hash::{Hash as _, Hasher as _};
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    abs.hash(&mut h);
    format!("{:06x}", h.finish() & 0xff_ffff)
}

/// A fresh bootstrap token `<6 chars>.<16 chars>` from the kernel's RNG.
fn new_bootstrap_token() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 22];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw))
        .context("reading /dev/urandom")?;
    let chars: String = raw
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    Ok(format!("{}.{}", &chars[..6], &chars[6..]))
}

/// A fresh cluster description: the host-side daemons (store, cloud),
/// their ports and data paths. The control plane is added once the
/// master instance exists ([`control_plane`]).
fn plan(dir: &Path, args: &UpArgs) -> anyhow::Result<ClusterState> {
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        anyhow::bail!(
            "invalid --time-scale {}: expected a positive number",
            args.time_scale
        );
    }
    if let Some(why) = dataplane_unavailable() {
        anyhow::bail!("ackemu up runs the cluster on its VPC data plane: {why}");
    }
    let clock = Clock::new(ClockConfig {
        time_scale: args.time_scale,
        ..ClockConfig::real_now()
    });
    let clock_flags = CommonArgs::clock_flags(&clock);
    let d = |p: &str| dir.join(p).display().to_string();
    let suffix = cluster_suffix(dir);
    let netns_prefix = format!("ak{suffix}-");
    let mut processes = Vec::new();
    let mut ports = Ports::default();

    let names = ["store-0", "store-1", "store-2"];
    let clients: Vec<String> = (0..3).map(|_| ports.addr()).collect::<Result<_, _>>()?;
    let peers: Vec<String> = (0..3).map(|_| ports.addr()).collect::<Result<_, _>>()?;
    let initial_cluster = names
        .iter()
        .zip(&peers)
        .map(|(n, p)| format!("{n}=http://{p}"))
        .collect::<Vec<_>>()
        .join(",");
    for i in 0..3 {
        let a = ports.addr()?;
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
        if args.store_quota_bytes > 0 {
            argv.push(format!("--quota-backend-bytes={}", args.store_quota_bytes));
        }
        let (heartbeat_ms, election_ms) = store_timers(args.time_scale);
        argv.push(format!("--heartbeat-interval={heartbeat_ms}"));
        argv.push(format!("--election-timeout={election_ms}"));
        argv.extend(clock_flags.iter().cloned());
        processes.push((
            names[i].to_string(),
            Proc {
                binary: "ackemu-store".into(),
                args: argv,
                admin: a,
                pid: None,
                netns: None,
            },
        ));
    }

    let cloud_grpc = ports.addr()?;
    let a = ports.addr()?;
    let mut argv = vec![
        format!("--data-dir={}", d("cloudsim")),
        format!("--grpc-listen={cloud_grpc}"),
        format!("--metadata-listen={}", ports.addr()?),
        format!("--registry-listen={}", ports.addr()?),
        format!("--admin-profile-file={}", d("cloud-profile.json")),
        "--hypervisor=local".into(),
        format!("--netns-prefix={netns_prefix}"),
        format!("--fabric-listen=127.0.0.1:{}", free_udp_port()?),
        "--on-exit=stop".into(),
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
            netns: None,
        },
    ));

    let port = if args.apiserver_port == 0 {
        ports.next()?
    } else {
        args.apiserver_port
    };
    Ok(ClusterState {
        epoch_unix_ms: clock.epoch_unix_ms(),
        time_scale: args.time_scale,
        apiserver: format!("127.0.0.1:{port}"),
        store_endpoints: clients,
        cloud_endpoint: format!("http://{cloud_grpc}"),
        netns_prefix,
        suffix: suffix.clone(),
        nodes: args.nodes,
        bootstrap_token: new_bootstrap_token()?,
        cloud: None,
        autoscaler_admin: None,
        processes,
    })
}

/// The cluster's clock, as its processes compute it.
fn cluster_clock(st: &ClusterState) -> Clock {
    Clock::new(ClockConfig {
        time_scale: st.time_scale,
        epoch_unix_ms: st.epoch_unix_ms,
        offset_ms: 0,
    })
}

/// The clock `ackemu cloud` signs with: the cluster's (time-scaled) when
/// the profile file is a cluster's (`<data-dir>/cloud-profile.json`) or,
/// without one, when `$ACKEMU_DATA_DIR`/`.ackemu` holds a cluster; else
/// real time.
pub fn cloud_clock(profile_file: Option<&Path>) -> Clock {
    let dir = match profile_file {
        Some(p) => p.parent().map(Path::to_path_buf),
        None => Some(PathBuf::from(
            std::env::var("ACKEMU_DATA_DIR").unwrap_or_else(|_| ".ackemu".into()),
        )),
    };
    match dir.and_then(|d| load(&d).ok().flatten()) {
        Some(st) => cluster_clock(&st),
        None => Clock::real(),
    }
}

/// A free loopback UDP port (the fabric's underlay).
fn free_udp_port() -> anyhow::Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(s.local_addr()?.port())
}

/// The processes of the master instance (API server, controllers,
/// scheduler) and the host's forward that reaches them, appended to the
/// plan once the master exists.
fn control_plane(dir: &Path, st: &mut ClusterState) -> anyhow::Result<()> {
    let cloud = st.cloud.clone().context("control plane before the cloud")?;
    let ns = format!("{}{}", st.netns_prefix, cloud.master_instance);
    let clock = cluster_clock(st);
    let clock_flags = CommonArgs::clock_flags(&clock);
    let d = |p: &str| dir.join(p).display().to_string();
    let master = &cloud.master_ip;
    let internal_kubeconfig = d("pki/admin.conf");
    let mut procs: Vec<(String, Proc)> = Vec::new();
    let mut ports = Ports::default();
    // Ports the plan already uses stay out of the picks.
    let mut used: std::collections::BTreeSet<String> =
        st.processes.iter().map(|(_, p)| p.admin.clone()).collect();
    used.insert(st.apiserver.clone());
    used.extend(st.store_endpoints.iter().cloned());
    let mut pick = move || -> anyhow::Result<String> {
        loop {
            let a = ports.addr()?;
            if !used.contains(&a) {
                return Ok(a);
            }
        }
    };
    let fwd_admin = pick()?;
    let mut master_proc = |name: &str, binary: &str, mut argv: Vec<String>| -> anyhow::Result<()> {
        let a = pick()?;
        argv.push(format!("--admin-listen={a}"));
        argv.extend(clock_flags.iter().cloned());
        procs.push((
            name.into(),
            Proc {
                binary: binary.into(),
                args: argv,
                admin: a,
                pid: None,
                netns: Some(ns.clone()),
            },
        ));
        Ok(())
    };
    master_proc(
        "apiserver",
        "ackemu-apiserver",
        vec![
            format!("--secure-listen={master}:6443"),
            format!("--store-endpoints={}", st.store_endpoints.join(",")),
            format!("--pki-dir={}", d("pki")),
            format!("--admin-kubeconfig={internal_kubeconfig}"),
            format!("--serving-names={master},127.0.0.1,172.19.0.1"),
            format!("--audit-log-path={}", d("logs/audit.log")),
        ],
    )?;
    master_proc(
        "controller-manager",
        "ackemu-controller-manager",
        vec![
            format!("--kubeconfig={internal_kubeconfig}"),
            "--allocate-node-cidrs".into(),
            format!("--cluster-cidr={}", provision::CLUSTER_CIDR),
            "--node-cidr-mask-size=24".into(),
            format!("--service-cluster-ip-range={}", provision::SERVICE_CIDR),
            format!("--cluster-signing-cert-file={}", d("pki/ca.crt")),
            format!("--cluster-signing-key-file={}", d("pki/ca.key")),
            // Kubelet certificates as long-lived as the control plane's
            // (the API server's CERT_VALIDITY): a clock moved a year ahead
            // expires the mesh's CA, not the nodes' credentials.
            "--cluster-signing-duration=43800h".into(),
            format!("--root-ca-file={}", d("pki/ca.crt")),
            format!("--service-account-private-key-file={}", d("pki/sa.key")),
        ],
    )?;
    master_proc(
        "scheduler",
        "ackemu-scheduler",
        vec![format!("--kubeconfig={internal_kubeconfig}")],
    )?;
    // The cloud controller manager calls the cloud with the master
    // instance's RAM role (STS from the metadata service, on the wire).
    master_proc(
        "cloud-controller-manager",
        "ackemu-cloud-controller-manager",
        vec![
            format!("--kubeconfig={internal_kubeconfig}"),
            format!("--region={}", provision::REGION),
            format!("--vpc-id={}", cloud.vpc),
            format!("--vswitch-id={}", cloud.vswitch),
            format!("--cluster-cidr={}", provision::CLUSTER_CIDR),
            "--configure-cloud-routes=true".into(),
            format!("--ram-role-name={}", cloud.master_role),
        ],
    )?;
    // The host reaches the master through loopback forwards only; the
    // master reaches the store members on the host's loopback (their
    // underlay) through forwards in the other direction.
    let mut fargs = vec![format!("--map={}={ns}/{master}:6443", st.apiserver)];
    let autoscaler_admin = pick()?;
    for a in procs
        .iter()
        .map(|(_, p)| p.admin.clone())
        .chain(std::iter::once(autoscaler_admin.clone()))
    {
        fargs.push(format!("--map={a}={ns}/{a}"));
    }
    st.autoscaler_admin = Some(autoscaler_admin);
    for ep in &st.store_endpoints {
        fargs.push(format!("--map={ns}/{ep}={ep}"));
    }
    fargs.push(format!("--admin-listen={fwd_admin}"));
    fargs.extend(clock_flags.iter().cloned());
    st.processes.push((
        "forward".into(),
        Proc {
            binary: "ackemu".into(),
            args: std::iter::once("forward".to_owned()).chain(fargs).collect(),
            admin: fwd_admin,
            pid: None,
            netns: None,
        },
    ));
    st.processes.extend(procs);
    Ok(())
}

/// The store's Raft timers (cluster milliseconds), tuned as etcd's guide
/// says for the links it runs on: heartbeat about the round trip (with
/// the fsync), election ten heartbeats. On a clock sped up `scale` times
/// every real millisecond of round trip and fsync is `scale` cluster
/// milliseconds, so a sped-up cluster is an etcd across a slow link:
/// allow 10 ms of real round trip, and never less than etcd's defaults
/// (100 ms, 1 s).
pub fn store_timers(scale: f64) -> (u64, u64) {
    let heartbeat = ((scale * 10.0).round() as u64).max(100);
    (heartbeat, heartbeat * 10)
}

/// Component `name` of the cluster in `dir`, with its state.
pub fn component(dir: &Path, name: &str) -> anyhow::Result<(ClusterState, Proc)> {
    let st = load(dir)?.with_context(|| format!("no cluster in {}", dir.display()))?;
    let p = st
        .processes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p.clone())
        .with_context(|| {
            let names: Vec<&str> = st.processes.iter().map(|(n, _)| n.as_str()).collect();
            format!(
                "no component {name:?}: expected one of {}",
                names.join(", ")
            )
        })?;
    Ok((st, p))
}

/// `ackemu chaos process <action> <component>`.
pub async fn process_fault(dir: &Path, name: &str, action: &str) -> anyhow::Result<()> {
    let (mut st, p) = component(dir, name)?;
    let running = p.pid.filter(|pid| alive(*pid));
    let sig = match action {
        "kill" => "KILL",
        "term" => "TERM",
        "stop" => "STOP",
        "cont" => "CONT",
        "restart" => {
            if let Some(pid) = running
                && !stop(pid, Duration::from_secs(10), p.supervised()).await
            {
                anyhow::bail!("{name} (pid {pid}) did not stop");
            }
            if let Some((_, q)) = st.processes.iter_mut().find(|(n, _)| n == name) {
                q.pid = None;
            }
            save(dir, &st)?;
            start_all(dir, &mut st, Duration::from_secs(120), Some(name)).await?;
            return Ok(());
        }
        other => anyhow::bail!(
            "unknown process fault {other:?}: expected kill, term, stop, cont or restart"
        ),
    };
    let pid = running.with_context(|| format!("{name} is not running"))?;
    if !process::send(pid, sig, p.supervised()) {
        anyhow::bail!("sending SIG{sig} to {name} (pid {pid}) failed");
    }
    println!("sent SIG{sig} to {name} (pid {pid})");
    Ok(())
}

/// Starts every daemon that is not running (or only `only`), in order,
/// waiting for each to be ready (the stores as a group).
async fn start_all(
    dir: &Path,
    st: &mut ClusterState,
    limit: Duration,
    only: Option<&str>,
) -> anyhow::Result<()> {
    let total = st.processes.len();
    for i in 0..total {
        let (name, p) = st.processes[i].clone();
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let log = log_path(dir, &name);
        if let Some(pid) = p.pid.filter(|pid| alive(*pid)) {
            println!("[{}/{total}] {name} already running (pid {pid})", i + 1);
            continue;
        }
        let bin = binary(&p.binary)?;
        let pid = match &p.netns {
            None => spawn(&bin, &p.args, &log)?,
            Some(ns) => {
                let mut argv = vec![
                    "supervise".to_owned(),
                    "--name".to_owned(),
                    name.clone(),
                    "--".to_owned(),
                    "ip".to_owned(),
                    "netns".to_owned(),
                    "exec".to_owned(),
                    ns.clone(),
                    bin.display().to_string(),
                ];
                argv.extend(p.args.iter().cloned());
                spawn(&binary("ackemu")?, &argv, &log)?
            }
        };
        st.processes[i].1.pid = Some(pid);
        save(dir, st)?;
        let place = p
            .netns
            .as_deref()
            .map(|n| format!(" in {n}"))
            .unwrap_or_default();
        println!(
            "[{}/{total}] started {name}{place} (pid {pid}), log {}",
            i + 1,
            log.display()
        );
        // The stores elect together: wait for them as a group.
        if only.is_none()
            && name.starts_with("store-")
            && st
                .processes
                .get(i + 1)
                .is_some_and(|(n, _)| n.starts_with("store-"))
        {
            continue;
        }
        for (n, q) in st.processes[..=i].iter().filter(|(n, _)| {
            n == &name || (only.is_none() && name.starts_with("store-") && n.starts_with("store-"))
        }) {
            wait_ready(n, q.pid.unwrap_or(0), &q.admin, limit, &log_path(dir, n)).await?;
        }
        if only.is_none() && name.starts_with("store-") {
            wait_store_quorum(&st.store_endpoints, limit).await?;
        }
        println!("      {name} ready");
    }
    Ok(())
}

/// The host's kubeconfig: the API server's admin kubeconfig, pointed at
/// the host's forward instead of the master's address.
fn host_kubeconfig(dir: &Path, st: &ClusterState) -> anyhow::Result<PathBuf> {
    let cloud = st.cloud.as_ref().context("no cloud yet")?;
    let internal = dir.join("pki/admin.conf");
    let text = std::fs::read_to_string(&internal)
        .with_context(|| format!("reading {}", internal.display()))?;
    let from = format!("https://{}:6443", cloud.master_ip);
    if !text.contains(&from) {
        anyhow::bail!("{} does not name {from}", internal.display());
    }
    let out = dir.join("kubeconfig");
    let tmp = dir.join("kubeconfig.tmp");
    std::fs::write(
        &tmp,
        text.replace(&from, &format!("https://{}", st.apiserver)),
    )?;
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// `ackemu up`: start (or resume) the cluster in the data dir.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let wall = Clock::real();
    let started = wall.now();
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
    let limit = args.ready_timeout;
    start_all(dir, &mut st, limit, None).await?;

    let clock = cluster_clock(&st);
    let (cloud_client, _) = provision::admin_client(&dir.join("cloud-profile.json"), &clock)?;
    if st.cloud.is_none() {
        println!("creating the VPC, security group, RAM roles and the master instance");
        let ids =
            provision::network_and_master(&cloud_client, &st.suffix, MASTER_USER_DATA).await?;
        st.cloud = Some(ids);
        save(dir, &st)?;
    }
    let cloud = st.cloud.clone().context("cloud ids")?;
    provision::wait_running(&cloud_client, &cloud.master_instance, limit).await?;
    println!(
        "      master {} running at {}",
        cloud.master_instance, cloud.master_ip
    );
    if !st.processes.iter().any(|(n, _)| n == "apiserver") {
        control_plane(dir, &mut st)?;
        save(dir, &st)?;
    }
    start_all(dir, &mut st, limit, None).await?;
    let kubeconfig = host_kubeconfig(dir, &st)?;

    let kube = kubeinit::connect(&kubeconfig, &clock)?;
    kubeinit::bootstrap(&kube, &st.bootstrap_token, &cloud.master_ip, dir)
        .await
        .context("creating the bootstrap token, RBAC and cluster-info")?;
    addons::install(&kube)
        .await
        .context("installing the add-ons")?;
    if args.mesh {
        mesh::install(&kube, &clock)
            .await
            .context("installing the service mesh add-on")?;
    }

    if st.nodes > 0 && cloud.scaling_group.is_none() {
        println!("creating the workers' scaling group ({} nodes)", st.nodes);
        let ud = worker_user_data(dir, &st)?;
        let group = provision::worker_group(
            &cloud_client,
            &cloud,
            &st.suffix,
            st.nodes,
            st.nodes.max(10),
            &ud,
        )
        .await?;
        if let Some(c) = st.cloud.as_mut() {
            c.scaling_group = Some(group);
        }
        save(dir, &st)?;
    }
    if st.nodes > 0 {
        kubeinit::wait_nodes_ready(&kube, st.nodes as usize, limit).await?;
    }
    // The autoscaler starts once the first workers are Ready: pods pending
    // while they boot must not look like a lack of capacity.
    if let (Some(group), Some(admin)) = (
        st.cloud.as_ref().and_then(|c| c.scaling_group.clone()),
        st.autoscaler_admin.clone(),
    ) && args.autoscaler
        && !st.processes.iter().any(|(n, _)| n == "cluster-autoscaler")
    {
        let cloud = st.cloud.clone().context("cloud ids")?;
        let mut argv = vec![
            format!("--kubeconfig={}", dir.join("pki/admin.conf").display()),
            format!("--scaling-group-id={group}"),
            format!("--region={}", provision::REGION),
            format!("--ram-role-name={}", cloud.master_role),
            format!("--admin-listen={admin}"),
        ];
        argv.extend(CommonArgs::clock_flags(&clock));
        st.processes.push((
            "cluster-autoscaler".into(),
            Proc {
                binary: "ackemu-cluster-autoscaler".into(),
                args: argv,
                admin,
                pid: None,
                netns: Some(format!("{}{}", st.netns_prefix, cloud.master_instance)),
            },
        ));
        save(dir, &st)?;
        start_all(dir, &mut st, limit, None).await?;
    }

    println!(
        "\ncluster is up in {:.1}s ({} nodes Ready): API server https://{}",
        wall.now().saturating_duration_since(started).as_secs_f64(),
        st.nodes,
        st.apiserver
    );
    println!(
        "  export KUBECONFIG={}",
        std::fs::canonicalize(&kubeconfig)
            .unwrap_or(kubeconfig)
            .display()
    );
    println!("  kubectl get nodes");
    println!(
        "  ackemu status --data-dir {}   ackemu down --data-dir {}",
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// The master's UserData: nothing to join (the launcher starts the
/// control plane in it, as an operator would over ssh); it logs its boot.
const MASTER_USER_DATA: &str =
    "#!/bin/sh\necho \"master $ACKEMU_INSTANCE_ID booted at $ACKEMU_PRIVATE_IP\"\n";

/// The workers' UserData, like ACK's `attach_node.sh`: start the node's
/// service manager with the node's unit files, then join the cluster with
/// the bootstrap token (`ackemu-node attach`), which verifies
/// `cluster-info`, gets the node's client certificate through a CSR and
/// starts the node's units.
fn worker_user_data(dir: &Path, st: &ClusterState) -> anyhow::Result<String> {
    let cloud = st.cloud.as_ref().context("no cloud yet")?;
    let bin = process::bin_dir()?;
    let nodes = std::fs::canonicalize(dir)?.join("nodes");
    let clock = CommonArgs::clock_flags(&cluster_clock(st)).join(" ");
    Ok(format!(
        r#"#!/bin/sh
# attach_node.sh: join this ECS instance to the cluster as a worker.
set -e
BIN={bin}
NODE_DIR={nodes}/$ACKEMU_INSTANCE_ID
mkdir -p "$NODE_DIR"
# What follows goes to the node's attach log and the instance's console.
rm -f "$NODE_DIR/.console"
mkfifo "$NODE_DIR/.console"
tee -a "$NODE_DIR/attach.log" <"$NODE_DIR/.console" &
exec >"$NODE_DIR/.console" 2>&1
rm -f "$NODE_DIR/.console"
echo "attach: instance $ACKEMU_INSTANCE_ID at $ACKEMU_PRIVATE_IP"
exec "$BIN/ackemu-node" attach \
  --apiserver https://{master}:6443 \
  --token {token} \
  --node-name "$ACKEMU_INSTANCE_ID" \
  --node-ip "$ACKEMU_PRIVATE_IP" \
  --provider-id "{region}.$ACKEMU_INSTANCE_ID" \
  --data-dir "$NODE_DIR" \
  --bin-dir "$BIN" \
  --cluster-dns 172.19.0.10 \
  --admin-ports \
  {clock}
"#,
        bin = bin.display(),
        nodes = nodes.display(),
        master = cloud.master_ip,
        token = st.bootstrap_token,
        region = provision::REGION,
    ))
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
        "{:<20} {:>8} {:<8} {:<22} READY",
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
            "{:<20} {:>8} {:<8} {:<22} {}",
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
    /// Component name as `ackemu status` lists it (e.g. apiserver,
    /// store-0); with `--node`, a unit of that node (kubelet, runtime,
    /// cnid, proxy) or `attach` / `systemd`.
    pub component: String,
    /// A worker's instance id: read its journal, as `journalctl -u` on the
    /// node would.
    #[arg(long)]
    pub node: Option<String>,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
}

/// The log file of `unit` on worker `node` (`nodes/<instance-id>/`).
fn node_log_path(dir: &Path, node: &str, unit: &str) -> anyhow::Result<PathBuf> {
    let root = node::node_dir(dir, node)?;
    let path = match unit {
        "attach" | "systemd" => root.join(format!("{unit}.log")),
        u => root
            .join("journal")
            .join(format!("{}.service.log", u.trim_end_matches(".service"))),
    };
    if !path.exists() {
        let mut units: Vec<String> = std::fs::read_dir(root.join("journal"))
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let n = e.ok()?.file_name().into_string().ok()?;
                n.strip_suffix(".service.log").map(str::to_owned)
            })
            .collect();
        units.extend(["attach".to_owned(), "systemd".to_owned()]);
        anyhow::bail!(
            "node {node} has no log of {unit:?}: expected one of {}",
            units.join(", ")
        );
    }
    Ok(path)
}

/// Print a component's log.
pub fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let st = load(&args.dir.data_dir)?
        .with_context(|| format!("no cluster in {}", args.dir.data_dir.display()))?;
    if let Some(node) = &args.node {
        let path = node_log_path(&args.dir.data_dir, node, &args.component)?;
        let text = match args.tail {
            Some(n) => process::tail(&path, n),
            None => std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        };
        println!("{text}");
        return Ok(());
    }
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
            if stop(pid, Duration::from_secs(10), p.supervised()).await {
                println!("stopped {name} (pid {pid})");
                st.processes[i].1.pid = None;
            } else {
                stuck.insert(name, pid);
            }
        }
    }
    save(dir, &st)?;
    // cloudsim powers its instances off when it stops; anything left in
    // this cluster's namespaces (a cloudsim killed -9) goes now.
    if !st.netns_prefix.is_empty() {
        for ns in ackemu_cloudsim::dataplane::netns::list()
            .into_iter()
            .filter(|n| n.starts_with(&st.netns_prefix))
        {
            for pid in ackemu_cloudsim::dataplane::netns::pids_in(&ns) {
                process::signal(pid as u32, "KILL");
            }
            if let Err(e) = ackemu_cloudsim::dataplane::netns::del(&ns).await {
                stuck.insert(format!("namespace {ns}: {e}"), 0);
            } else {
                println!("removed leftover namespace {ns}");
            }
        }
    }
    if !stuck.is_empty() {
        anyhow::bail!("could not stop {stuck:?}");
    }
    if args.purge {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        println!("removed {}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_timers_follow_the_clock_and_keep_etcd_defaults_at_real_speed() {
        assert_eq!(super::store_timers(1.0), (100, 1000));
        assert_eq!(super::store_timers(5.0), (100, 1000));
        assert_eq!(super::store_timers(60.0), (600, 6000));
        let (h, e) = super::store_timers(600.0);
        assert!(e >= 5 * h, "the store refuses election < 5x heartbeat");
    }
}
