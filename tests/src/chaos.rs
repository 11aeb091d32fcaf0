//! The generic chaos mode: seeded random process and network faults on the
//! store members and the control plane while Kubernetes-shaped load runs
//! (Deployments scaled up and down, their pods deleted, Services, ConfigMap
//! writes), then a fault-free phase and the invariants every healthy
//! cluster keeps whatever happened before:
//!
//! - no pod was ever seen bound to two nodes, and pod IPs are unique and
//!   inside their node's podCIDR;
//! - every Deployment converges (its ReplicaSets' replicas and its ready
//!   pods equal its spec);
//! - every Service's EndpointSlices list exactly its ready pods' IPs;
//! - the VPC route table holds exactly the nodes' podCIDRs;
//! - no acknowledged write is lost (each ConfigMap holds the last value the
//!   API server acknowledged, or a later write whose answer was lost);
//! - the store members agree (the same HashKV at the same revision).
//!
//! Faults come one at a time, so the store keeps a quorum and the cluster
//! can always make progress between faults: kill -9 (then start again),
//! SIGSTOP (then SIGCONT), a store member cut off from its peers (its
//! `store/peer/send` and `store/peer/recv` failpoints drop everything) and a
//! store member's slow disk (`store/raft/fsync` delayed). Everything goes
//! through the user's tools ([`Cluster`]), as in the scenarios.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use ackemu_base::clock::Clock;
use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::scenario::{Phase, Run, Scenario};
use crate::scenarios::util::{condition, create, items, json_of, name};

pub const ID: &str = "CHAOS";
pub const TITLE: &str = "random-faults-under-load";

/// The Deployments of the load, each with a Service of the same name.
const APPS: [&str; 3] = ["chaos-a", "chaos-b", "chaos-c"];
/// The ConfigMaps the load writes.
const CONFIGMAPS: usize = 4;
/// A store fault's target meaning "whichever member leads when it starts".
pub const LEADER: &str = "the store leader";
/// Load workers running side by side.
const WORKERS: usize = 2;
/// The control-plane components faults may hit (the store members are
/// added from [`Cluster::store_members`]).
const CONTROL_PLANE: [&str; 4] = [
    "apiserver",
    "scheduler",
    "controller-manager",
    "cloud-controller-manager",
];

/// How a chaos run goes.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// Seeds the choice of faults, their targets and the load's operations.
    pub seed: u64,
    /// How many faults, one after the other.
    pub faults: u32,
    /// Workers of the cluster.
    pub nodes: u32,
    /// How long one fault lasts, in cluster time (the actual duration is
    /// drawn between half and all of it).
    pub fault_duration: Duration,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        ChaosOptions {
            seed: 1,
            faults: 6,
            nodes: 2,
            fault_duration: Duration::from_secs(120),
        }
    }
}

impl ChaosOptions {
    /// The cluster a chaos run needs, as a scenario's.
    pub fn scenario(&self) -> Scenario {
        Scenario {
            id: ID,
            title: TITLE,
            nodes: self.nodes,
            store_quota_bytes: 0,
            up_args: &[],
        }
    }
}

/// One fault as applied and undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, then the component started again.
    Kill(String),
    /// SIGSTOP, then SIGCONT.
    Stop(String),
    /// A store member's raft messages dropped both ways.
    Isolate(String),
    /// A store member's fsync delayed.
    SlowDisk(String),
}

impl Fault {
    /// `n` faults drawn by `rng`: every kind comes once, in a seeded order,
    /// before any comes twice; a store fault hits the current leader
    /// ([`LEADER`], resolved when it is applied) half the time.
    pub fn plan(rng: &mut StdRng, stores: &[String], n: u32) -> Vec<Fault> {
        let mut kinds: Vec<u32> = Vec::new();
        (0..n)
            .map(|_| {
                if kinds.is_empty() {
                    kinds = (0..6).collect();
                    kinds.shuffle(rng);
                }
                let kind = kinds.pop().unwrap_or(0);
                let store = if rng.random_bool(0.5) {
                    LEADER.to_owned()
                } else {
                    stores[rng.random_range(0..stores.len())].clone()
                };
                let component = CONTROL_PLANE[rng.random_range(0..CONTROL_PLANE.len())].to_owned();
                match kind {
                    0 => Fault::Kill(store),
                    1 => Fault::Stop(store),
                    2 => Fault::Isolate(store),
                    3 => Fault::SlowDisk(store),
                    4 => Fault::Kill(component),
                    _ => Fault::Stop(component),
                }
            })
            .collect()
    }

    /// The process the fault hits.
    pub fn target(&self) -> &str {
        match self {
            Fault::Kill(p) | Fault::Stop(p) | Fault::Isolate(p) | Fault::SlowDisk(p) => p,
        }
    }

    /// The same fault on process `p`.
    fn on(&self, p: String) -> Fault {
        match self {
            Fault::Kill(_) => Fault::Kill(p),
            Fault::Stop(_) => Fault::Stop(p),
            Fault::Isolate(_) => Fault::Isolate(p),
            Fault::SlowDisk(_) => Fault::SlowDisk(p),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Fault::Kill(p) => format!("kill -9 {p}"),
            Fault::Stop(p) => format!("SIGSTOP {p}"),
            Fault::Isolate(p) => format!("cut {p} off from its peers"),
            Fault::SlowDisk(p) => format!("slow fsync on {p}"),
        }
    }

    /// The `ackemu chaos` argument lists that apply the fault.
    fn apply(&self) -> Vec<Vec<String>> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Fault::Kill(p) => vec![v(&["process", "kill", p])],
            Fault::Stop(p) => vec![v(&["process", "stop", p])],
            Fault::Isolate(p) => ["store/peer/send", "store/peer/recv"]
                .iter()
                .map(|fp| v(&["failpoint", "set", "--target", p, fp, "return(partitioned)"]))
                .collect(),
            Fault::SlowDisk(p) => vec![v(&[
                "failpoint",
                "set",
                "--target",
                p,
                "store/raft/fsync",
                "delay(200ms)",
            ])],
        }
    }

    /// The `ackemu chaos` argument lists that undo it.
    fn undo(&self) -> Vec<Vec<String>> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Fault::Kill(p) => vec![v(&["process", "restart", p])],
            Fault::Stop(p) => vec![v(&["process", "cont", p])],
            Fault::Isolate(p) => ["store/peer/send", "store/peer/recv"]
                .iter()
                .map(|fp| v(&["failpoint", "clear", "--target", p, fp]))
                .collect(),
            Fault::SlowDisk(p) => vec![v(&[
                "failpoint",
                "clear",
                "--target",
                p,
                "store/raft/fsync",
            ])],
        }
    }
}

/// The writes to one ConfigMap, in order: the value and whether the API
/// server acknowledged it.
#[derive(Debug, Default, Clone)]
pub struct Writes {
    pub attempts: Vec<(String, bool)>,
}

impl Writes {
    /// Whether `found` (the value read back, `None`: no such object) is
    /// what the history allows: the last acknowledged value or any later
    /// attempt; with nothing acknowledged, absence or any attempt.
    pub fn allows(&self, found: Option<&str>) -> bool {
        let last_acked = self.attempts.iter().rposition(|(_, ok)| *ok);
        match (last_acked, found) {
            (None, None) => true,
            (Some(_), None) => false,
            (from, Some(v)) => self.attempts[from.unwrap_or(0)..]
                .iter()
                .any(|(a, _)| a == v),
        }
    }

    pub fn acknowledged(&self) -> usize {
        self.attempts.iter().filter(|(_, ok)| *ok).count()
    }
}

/// What the load saw and did.
#[derive(Debug, Default)]
struct Load {
    ops: u32,
    failed_ops: u32,
    writes: BTreeMap<String, Writes>,
    /// pod uid → the node it was first seen bound to.
    bound: BTreeMap<String, (String, String)>,
    /// Pods seen on a second node: (pod, first node, second node).
    rebound: Vec<(String, String, String)>,
}

impl Load {
    /// Notes where the listed pods are bound.
    fn observe(&mut self, pods: &Value) {
        for p in items(pods) {
            let (uid, node) = (
                p["metadata"]["uid"].as_str().unwrap_or(""),
                p["spec"]["nodeName"].as_str().unwrap_or(""),
            );
            if uid.is_empty() || node.is_empty() {
                continue;
            }
            match self.bound.get(uid) {
                None => {
                    self.bound
                        .insert(uid.into(), (name(p).to_owned(), node.to_owned()));
                }
                Some((pod, first)) if first != node => {
                    self.rebound
                        .push((pod.clone(), first.clone(), node.to_owned()));
                }
                Some(_) => {}
            }
        }
    }
}

/// Load worker `worker`: one operation at a time until `stop`. Each
/// ConfigMap has one writer, so its acknowledgements are ordered.
async fn load(c: &impl Cluster, seed: u64, worker: usize, stop: &Cell<bool>, load: &RefCell<Load>) {
    let clock = Clock::real();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_10ad ^ worker as u64);
    let mut counter = 0u32;
    while !stop.get() {
        counter += 1;
        let ok = match rng.random_range(0..10) {
            0..=3 => {
                let mine = CONFIGMAPS / WORKERS;
                let cm = format!("chaos-cm-{}", worker + WORKERS * rng.random_range(0..mine));
                let value = format!("w{worker}-{counter}");
                let created = load
                    .borrow()
                    .writes
                    .get(&cm)
                    .is_some_and(|w| w.acknowledged() > 0);
                let out = if created {
                    let patch = format!(r#"{{"data":{{"v":"{value}"}}}}"#);
                    c.kubectl(&["patch", "configmap", &cm, "--type=merge", "-p", &patch])
                        .await
                } else {
                    c.kubectl(&[
                        "create",
                        "configmap",
                        &cm,
                        &format!("--from-literal=v={value}"),
                    ])
                    .await
                };
                let acked = out.as_ref().is_ok_and(|o| o.ok);
                // A create refused because an unacknowledged earlier create
                // took effect leaves the object as that write made it.
                let exists = out
                    .as_ref()
                    .is_ok_and(|o| o.stderr.contains("AlreadyExists"));
                let mut l = load.borrow_mut();
                let w = l.writes.entry(cm).or_default();
                if exists {
                    if let Some(first) = w.attempts.first_mut() {
                        first.1 = true;
                    }
                } else {
                    w.attempts.push((value, acked));
                }
                acked
            }
            4..=6 => {
                let app = APPS[rng.random_range(0..APPS.len())];
                let n = rng.random_range(1..=3).to_string();
                c.kubectl(&["scale", "deployment", app, "--replicas", &n])
                    .await
                    .is_ok_and(|o| o.ok)
            }
            7 => match c
                .kubectl(&["get", "pods", "-l", "chaos=load", "-o", "name"])
                .await
            {
                Ok(o) if o.ok => {
                    let pods: Vec<&str> = o.stdout.lines().collect();
                    if pods.is_empty() {
                        true
                    } else {
                        let p = pods[rng.random_range(0..pods.len())];
                        c.kubectl(&["delete", p, "--wait=false"])
                            .await
                            .is_ok_and(|o| o.ok)
                    }
                }
                _ => false,
            },
            _ => match json_of(c, &["get", "pods", "-l", "chaos=load"]).await {
                Ok(pods) => {
                    load.borrow_mut().observe(&pods);
                    true
                }
                Err(_) => false,
            },
        };
        {
            let mut l = load.borrow_mut();
            l.ops += 1;
            l.failed_ops += u32::from(!ok);
        }
        clock.sleep(Duration::from_millis(150)).await;
    }
}

/// The faults, one after the other, each undone before the next; what was
/// applied and any `ackemu chaos` call that failed.
async fn faults(
    c: &impl Cluster,
    o: &ChaosOptions,
    stores: &[String],
    stop: &Cell<bool>,
) -> (Vec<(Fault, Duration)>, Vec<String>) {
    let clock = Clock::real();
    let scale = c.time_scale().max(1e-9);
    let mut rng = StdRng::seed_from_u64(o.seed);
    let (mut done, mut errors) = (Vec::new(), Vec::new());
    let plan = Fault::plan(&mut rng, stores, o.faults);
    for (i, f) in plan.into_iter().enumerate() {
        let f = if f.target() == LEADER {
            match store_leader(c).await {
                Ok(m) => f.on(m),
                Err(e) => {
                    errors.push(format!("finding the store leader: {e:#}"));
                    f.on(stores[0].clone())
                }
            }
        } else {
            f
        };
        let lasts = o.fault_duration.mul_f64(rng.random_range(0.5..=1.0));
        let gap = o.fault_duration.mul_f64(rng.random_range(0.25..=0.5));
        println!(
            "     fault {}/{}: {} for {:.0}s of cluster time",
            i + 1,
            o.faults,
            f.describe(),
            lasts.as_secs_f64()
        );
        for args in f.apply() {
            chaos_call(c, &args, &mut errors).await;
        }
        clock.sleep(lasts.div_f64(scale)).await;
        for args in f.undo() {
            chaos_call(c, &args, &mut errors).await;
        }
        done.push((f, lasts));
        clock.sleep(gap.div_f64(scale)).await;
    }
    stop.set(true);
    (done, errors)
}

/// The store member that leads now.
async fn store_leader(c: &impl Cluster) -> anyhow::Result<String> {
    for (m, _) in c.store_members() {
        let Ok(out) = c
            .etcdctl(Some(&m), &["endpoint", "status", "-w", "json"])
            .await
        else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&out.stdout) else {
            continue;
        };
        let st = &v[0]["Status"];
        if st["leader"].as_u64().is_some() && st["leader"] == st["header"]["member_id"] {
            return Ok(m);
        }
    }
    anyhow::bail!("no store member says it leads")
}

async fn chaos_call(c: &impl Cluster, args: &[String], errors: &mut Vec<String>) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    match c.chaos(&refs).await {
        Ok(out) if out.ok => {}
        Ok(out) => errors.push(format!("ackemu chaos {}: {}", args.join(" "), out.text())),
        Err(e) => errors.push(format!("ackemu chaos {}: {e:#}", args.join(" "))),
    }
}

/// A chaos run on `c`, as a line of the report.
pub async fn run_on(c: &impl Cluster, o: &ChaosOptions) -> Run {
    let clock = Clock::real();
    let start = clock.now();
    let mut r = Run::new(ID, TITLE, c);
    println!(
        "== {ID} {TITLE} ({}, seed {}, {} faults)",
        c.backend(),
        o.seed,
        o.faults
    );
    if let Err(e) = run(c, o, &mut r).await {
        println!("   failed: {e:#}");
        r.error = Some(format!("{e:#}"));
    }
    r.wall = clock.now().saturating_duration_since(start);
    r
}

/// The chaos run on `c`: load, faults, the fault-free phase and the
/// invariants, recorded into `r`.
pub async fn run(c: &impl Cluster, o: &ChaosOptions, r: &mut Run) -> anyhow::Result<()> {
    r.phase(Phase::Setup);
    crate::scenarios::util::workers_ready(c, r, o.nodes as usize).await?;
    for app in APPS {
        create(c, &deployment(app)).await?;
        create(c, &service(app)).await?;
    }
    converged(c, r, "the load's deployments are up").await?;

    r.phase(Phase::Inject);
    let stores: Vec<String> = c.store_members().into_iter().map(|(n, _)| n).collect();
    anyhow::ensure!(!stores.is_empty(), "the cluster has no store members");
    let stop = Cell::new(false);
    let seen = RefCell::new(Load::default());
    let ((applied, errors), (), ()) = tokio::join!(
        faults(c, o, &stores, &stop),
        load(c, o.seed, 0, &stop, &seen),
        load(c, o.seed, 1, &stop, &seen)
    );
    let l = seen.into_inner();
    let list: Vec<String> = applied
        .iter()
        .map(|(f, d)| format!("{} ({:.0}s)", f.describe(), d.as_secs_f64()))
        .collect();
    r.step(
        format!("{} faults under load", applied.len()),
        format!(
            "seed {}: {}; {} operations, {} failed while faults were on",
            o.seed,
            list.join(", "),
            l.ops,
            l.failed_ops
        ),
    );
    anyhow::ensure!(
        errors.is_empty(),
        "chaos tooling failed: {}",
        errors.join("; ")
    );

    r.phase(Phase::Recover);
    r.eventually(
        "every store member is healthy",
        Duration::from_secs(600),
        || async move {
            let out = c.etcdctl(None, &["endpoint", "health"]).await?;
            Ok(out.ok.then(|| ((), out.text().trim().replace('\n', "; "))))
        },
    )
    .await?;
    crate::scenarios::util::workers_ready(c, r, o.nodes as usize).await?;
    converged(c, r, "every deployment converges").await?;
    r.eventually(
        "endpoints match the ready pods",
        Duration::from_secs(600),
        || async move { endpoints_match(c).await },
    )
    .await?;
    r.eventually(
        "the route table matches the nodes' podCIDRs",
        Duration::from_secs(600),
        || async move { routes_match(c).await },
    )
    .await?;
    let pods = json_of(c, &["get", "pods", "-l", "chaos=load"]).await?;
    let mut l = l;
    l.observe(&pods);
    if l.rebound.is_empty() {
        r.step(
            "no pod was bound to two nodes",
            format!("{} pods seen bound", l.bound.len()),
        );
    } else {
        r.eventually("no pod was bound to two nodes", Duration::ZERO, || async {
            Ok(None::<((), String)>)
        })
        .await
        .with_context(|| format!("{:?}", l.rebound))?;
    }
    let ips = pod_ips_valid(c).await?;
    r.step("pod IPs are unique and in their node's podCIDR", ips);
    let lost = lost_writes(c, &l.writes).await?;
    let acked: usize = l.writes.values().map(Writes::acknowledged).sum();
    if lost.is_empty() {
        r.step(
            "no acknowledged write was lost",
            format!("{acked} acknowledged ConfigMap writes read back"),
        );
    } else {
        anyhow::bail!("acknowledged writes lost: {}", lost.join("; "));
    }
    r.eventually(
        "the store members agree",
        Duration::from_secs(600),
        || async move { members_agree(c).await },
    )
    .await?;
    Ok(())
}

/// A load Deployment: two pods of the `app` image.
fn deployment(app: &str) -> Value {
    let labels = serde_json::json!({"app": app, "chaos": "load"});
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "app"}]}
            }
        }
    })
}

/// The ClusterIP Service in front of a load Deployment.
fn service(app: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app, "labels": {"chaos": "load"}},
        "spec": {
            "selector": {"app": app},
            "ports": [{"port": 80, "targetPort": 8080}]
        }
    })
}

/// Waits until every load Deployment's ReplicaSets and ready pods equal
/// its spec.
async fn converged(c: &impl Cluster, r: &mut Run, what: &str) -> anyhow::Result<()> {
    r.eventually(what, Duration::from_secs(1200), || async move {
        let deps = json_of(c, &["get", "deployments", "-l", "chaos=load"]).await?;
        let rss = json_of(c, &["get", "replicasets", "-l", "chaos=load"]).await?;
        let pods = json_of(c, &["get", "pods", "-l", "chaos=load"]).await?;
        let mut detail = Vec::new();
        for d in items(&deps) {
            let want = d["spec"]["replicas"].as_i64().unwrap_or(-1);
            let st = &d["status"];
            let fresh = st["observedGeneration"] == d["metadata"]["generation"];
            if !fresh
                || st["readyReplicas"].as_i64().unwrap_or(0) != want
                || st["updatedReplicas"].as_i64().unwrap_or(0) != want
                || st["replicas"].as_i64().unwrap_or(0) != want
            {
                return Ok(None);
            }
            let uid = d["metadata"]["uid"].as_str().unwrap_or("");
            let owned = |o: &Value| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["uid"].as_str() == Some(uid))
            };
            let rs_replicas: i64 = items(&rss)
                .filter(|rs| owned(rs))
                .map(|rs| rs["status"]["replicas"].as_i64().unwrap_or(0))
                .sum();
            let rs_uids: BTreeSet<&str> = items(&rss)
                .filter(|rs| owned(rs))
                .filter_map(|rs| rs["metadata"]["uid"].as_str())
                .collect();
            let ready_pods = items(&pods)
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && condition(p, "Ready"))
                .filter(|p| {
                    p["metadata"]["ownerReferences"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|r| r["uid"].as_str().is_some_and(|u| rs_uids.contains(u)))
                })
                .count() as i64;
            if rs_replicas != want || ready_pods != want {
                return Ok(None);
            }
            detail.push(format!("{} {want}/{want}", name(d)));
        }
        Ok((detail.len() == APPS.len()).then(|| ((), detail.join(", "))))
    })
    .await
}

/// Whether each load Service's ready EndpointSlice addresses are its ready
/// pods' IPs.
async fn endpoints_match(c: &impl Cluster) -> anyhow::Result<Option<((), String)>> {
    let pods = json_of(c, &["get", "pods", "-l", "chaos=load"]).await?;
    let slices = json_of(c, &["get", "endpointslices"]).await?;
    let mut detail = Vec::new();
    for app in APPS {
        let want: BTreeSet<&str> = items(&pods)
            .filter(|p| p["metadata"]["labels"]["app"] == app)
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && condition(p, "Ready"))
            .filter_map(|p| p["status"]["podIP"].as_str())
            .collect();
        let have: BTreeSet<&str> = items(&slices)
            .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == app)
            .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
            .filter(|e| e["conditions"]["ready"] != false)
            .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        if want != have {
            return Ok(None);
        }
        detail.push(format!("{app}: {}", want.len()));
    }
    Ok(Some(((), detail.join(", "))))
}

/// Whether the custom routes of the cluster's route table are exactly the
/// nodes' podCIDRs, each to its node's instance.
async fn routes_match(c: &impl Cluster) -> anyhow::Result<Option<((), String)>> {
    let table = c.cloud_id("route_table").context("the route table")?;
    let out = c
        .cloud("vpc", "DescribeRouteEntryList", &[("RouteTableId", &table)])
        .await?
        .ok("DescribeRouteEntryList")?;
    let v: Value = serde_json::from_str(&out)?;
    let have: BTreeSet<String> = v["RouteEntrys"]["RouteEntry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["Type"] == "Custom")
        .filter_map(|e| e["DestinationCidrBlock"].as_str().map(str::to_owned))
        .collect();
    let nodes = json_of(c, &["get", "nodes"]).await?;
    let want: BTreeSet<String> = items(&nodes)
        .filter_map(|n| n["spec"]["podCIDR"].as_str().map(str::to_owned))
        .collect();
    Ok((have == want).then(|| {
        let d = want.iter().cloned().collect::<Vec<_>>().join(", ");
        ((), d)
    }))
}

/// Running pods' IPs are unique and inside their node's podCIDR; a summary.
async fn pod_ips_valid(c: &impl Cluster) -> anyhow::Result<String> {
    let nodes = json_of(c, &["get", "nodes"]).await?;
    let cidrs: BTreeMap<&str, &str> = items(&nodes)
        .filter_map(|n| Some((name(n), n["spec"]["podCIDR"].as_str()?)))
        .collect();
    let pods = json_of(
        c,
        &["get", "pods", "-A", "--field-selector=status.phase=Running"],
    )
    .await?;
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut checked = 0;
    for p in items(&pods) {
        if p["spec"]["hostNetwork"] == true {
            continue;
        }
        let (Some(ip), Some(node)) = (
            p["status"]["podIP"].as_str(),
            p["spec"]["nodeName"].as_str(),
        ) else {
            continue;
        };
        if let Some(other) = seen.insert(ip, name(p)) {
            anyhow::bail!("pods {other} and {} both have IP {ip}", name(p));
        }
        let cidr = cidrs
            .get(node)
            .with_context(|| format!("pod {} runs on {node}, which has no podCIDR", name(p)))?;
        anyhow::ensure!(
            in_cidr(ip, cidr),
            "pod {} has IP {ip}, outside {node}'s podCIDR {cidr}",
            name(p)
        );
        checked += 1;
    }
    Ok(format!("{checked} running pods"))
}

/// Whether IPv4 `ip` is in `cidr` (false for anything unparsable).
pub fn in_cidr(ip: &str, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(ip), Ok(net), Ok(len)) = (
        ip.parse::<Ipv4Addr>(),
        net.parse::<Ipv4Addr>(),
        len.parse::<u32>(),
    ) else {
        return false;
    };
    if len > 32 {
        return false;
    }
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// The ConfigMaps whose value the write history does not allow.
async fn lost_writes(
    c: &impl Cluster,
    writes: &BTreeMap<String, Writes>,
) -> anyhow::Result<Vec<String>> {
    let cms = json_of(c, &["get", "configmaps"]).await?;
    let mut lost = Vec::new();
    for (cm, w) in writes {
        let found = items(&cms)
            .find(|o| name(o) == cm)
            .map(|o| o["data"]["v"].as_str().unwrap_or(""));
        if !w.allows(found) {
            lost.push(format!("{cm} holds {found:?}, history {:?}", w.attempts));
        }
    }
    Ok(lost)
}

/// Whether every store member has the same HashKV at one revision they
/// all have.
async fn members_agree(c: &impl Cluster) -> anyhow::Result<Option<((), String)>> {
    let members = c.store_members();
    let mut revs = Vec::new();
    for (m, _) in &members {
        let out = c
            .etcdctl(Some(m), &["endpoint", "status", "-w", "json"])
            .await?
            .ok("etcdctl endpoint status")?;
        let v: Value = serde_json::from_str(&out)?;
        let rev = v[0]["Status"]["header"]["revision"]
            .as_i64()
            .with_context(|| format!("{m}'s status has no revision: {out}"))?;
        revs.push(rev);
    }
    let Some(&rev) = revs.iter().min() else {
        anyhow::bail!("no store members");
    };
    let rev = rev.to_string();
    let mut hashes = BTreeMap::new();
    for (m, _) in &members {
        let out = c
            .etcdctl(
                Some(m),
                &["endpoint", "hashkv", "--rev", &rev, "-w", "json"],
            )
            .await?
            .ok("etcdctl endpoint hashkv")?;
        let v: Value = serde_json::from_str(&out)?;
        let hash = v[0]["HashKV"]["hash"]
            .as_u64()
            .with_context(|| format!("{m}'s hashkv answered {out}"))?;
        hashes.insert(m.clone(), hash);
    }
    let distinct: BTreeSet<u64> = hashes.values().copied().collect();
    Ok((distinct.len() == 1).then(|| {
        (
            (),
            format!(
                "{} members, HashKV {:?} at revision {rev}",
                hashes.len(),
                distinct
            ),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(a: &[(&str, bool)]) -> Writes {
        Writes {
            attempts: a.iter().map(|(v, ok)| (v.to_string(), *ok)).collect(),
        }
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let h = w(&[("v1", true), ("v2", false), ("v3", true), ("v4", false)]);
        assert!(h.allows(Some("v3")));
        assert!(
            h.allows(Some("v4")),
            "a later unacknowledged write may have landed"
        );
        assert!(!h.allows(Some("v2")), "v3 was acknowledged after v2");
        assert!(!h.allows(Some("v1")));
        assert!(!h.allows(None), "acknowledged writes exist");
        let none = w(&[("v1", false)]);
        assert!(none.allows(None));
        assert!(none.allows(Some("v1")));
        assert!(!none.allows(Some("v9")));
    }

    #[test]
    fn a_pod_seen_on_a_second_node_is_recorded() {
        let mut l = Load::default();
        let pods = |node: &str| serde_json::json!({"items": [{"metadata": {"name": "p", "uid": "u1"}, "spec": {"nodeName": node}}]});
        l.observe(&pods("n1"));
        l.observe(&pods("n1"));
        assert!(l.rebound.is_empty());
        l.observe(&pods("n2"));
        assert_eq!(l.rebound, vec![("p".into(), "n1".into(), "n2".into())]);
    }

    #[test]
    fn cidr_membership() {
        assert!(in_cidr("172.20.1.7", "172.20.1.0/24"));
        assert!(!in_cidr("172.20.2.7", "172.20.1.0/24"));
        assert!(in_cidr("10.0.0.1", "0.0.0.0/0"));
        assert!(!in_cidr("x", "172.20.1.0/24"));
        assert!(!in_cidr("172.20.1.7", "172.20.1.0/33"));
    }

    #[test]
    fn faults_are_seeded_cover_every_kind_and_each_is_undone() {
        let stores = vec!["store-0".to_string(), "store-1".into(), "store-2".into()];
        let plan = |seed| Fault::plan(&mut StdRng::seed_from_u64(seed), &stores, 6);
        assert_eq!(plan(7), plan(7));
        let kinds: BTreeSet<u8> = plan(7)
            .iter()
            .map(|f| match f {
                Fault::Kill(p) if p.starts_with("store") || p == LEADER => 0,
                Fault::Stop(p) if p.starts_with("store") || p == LEADER => 1,
                Fault::Isolate(_) => 2,
                Fault::SlowDisk(_) => 3,
                Fault::Kill(_) => 4,
                Fault::Stop(_) => 5,
            })
            .collect();
        assert_eq!(kinds.len(), 6, "{:?}", plan(7));
        for f in plan(7).into_iter().chain(plan(8)) {
            assert_eq!(f.apply().len(), f.undo().len(), "{f:?}");
            assert!(f.apply()[0][0] == f.undo()[0][0], "{f:?}");
            assert_eq!(f.on("store-1".into()).target(), "store-1");
        }
    }
}
