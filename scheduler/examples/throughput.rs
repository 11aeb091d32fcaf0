//! Scheduler throughput benchmark: the pure scheduling pipeline (queue pop,
//! snapshot update, filter, score, select, assume, binding confirmed) over
//! synthetic clusters, like kube-scheduler's `scheduler_perf`
//! `SchedulingBasic` (existing pods first, then measured pods with
//! 100m / 500Mi requests). Prints pods/s per cluster size.
//!
//! ```text
//! cargo run --release -p ackemu-scheduler --example throughput -- \
//!     [--nodes 1000,5000] [--pods 5000] [--init-pods 1000] [--spread] [--seed 1]
//! ```
//!
//! `--spread` makes the measured pods replicas of ReplicaSets behind
//! Services, so PodTopologySpread's default constraints score them.

use std::time::Duration;

use ackemu_base::clock::{Clock, ClusterInstant};
use ackemu_kube::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use ackemu_kube::api::core::v1::{Pod, Service, ServiceSpec};
use ackemu_scheduler::fixtures::{NodeBuilder, PodBuilder};
use ackemu_scheduler::{CycleOutcome, Profile, QueueConfig, SchedulerCore, Trace};
use anyhow::{Context, bail};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

struct Args {
    nodes: Vec<usize>,
    pods: usize,
    init_pods: usize,
    spread: bool,
    seed: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        nodes: vec![1000, 5000],
        pods: 5000,
        init_pods: 1000,
        spread: false,
        seed: 1,
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
            "--init-pods" => {
                a.init_pods = value()?.parse().context("--init-pods expects a count")?
            }
            "--seed" => a.seed = value()?.parse().context("--seed expects an integer")?,
            "--spread" => a.spread = true,
            other => bail!(
                "unknown flag {other:?}: expected --nodes, --pods, --init-pods, --spread, --seed"
            ),
        }
    }
    Ok(a)
}

const WORKLOADS: usize = 50;

fn measured_pod(i: usize, spread: bool) -> Pod {
    let b = PodBuilder::new("default", &format!("pod-{i}"))
        .container_requests(&[("cpu", "100m"), ("memory", "500Mi")]);
    if spread {
        let w = i % WORKLOADS;
        b.label("app", &format!("app-{w}"))
            .owner(
                "apps/v1",
                "ReplicaSet",
                &format!("app-{w}-1"),
                &format!("uid-rs-{w}"),
            )
            .build()
    } else {
        b.build()
    }
}

fn add_workloads(core: &mut SchedulerCore) {
    let w = core.workloads_mut();
    for i in 0..WORKLOADS {
        let labels: std::collections::BTreeMap<String, String> =
            [("app".to_string(), format!("app-{i}"))].into();
        let mut svc = Service::default();
        svc.metadata.name = Some(format!("app-{i}"));
        svc.metadata.namespace = Some("default".into());
        svc.spec = Some(ServiceSpec {
            selector: Some(labels.clone()),
            ..Default::default()
        });
        w.upsert_service(&svc);
        let mut rs = ReplicaSet::default();
        rs.metadata.name = Some(format!("app-{i}-1"));
        rs.metadata.namespace = Some("default".into());
        rs.spec = Some(ReplicaSetSpec {
            selector: ackemu_kube::meta::LabelSelector {
                match_labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        });
        w.upsert_replica_set(&rs);
    }
}

/// Schedules every queued pod; returns how many were bound.
fn drain(
    core: &mut SchedulerCore,
    now: ClusterInstant,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<usize> {
    let mut trace = Trace::disabled();
    let mut bound = 0;
    while let Some(outcome) = core.schedule_next(now, rng, &mut trace) {
        match outcome {
            CycleOutcome::Bind { pod, .. } => {
                core.binding_succeeded(&pod.key);
                bound += 1;
            }
            CycleOutcome::Failed { pod, message, .. } => {
                bail!("pod {} did not fit a synthetic node: {message}", pod.key)
            }
        }
    }
    Ok(bound)
}

fn run(nodes: usize, args: &Args, clock: &Clock) -> anyhow::Result<()> {
    let now = ClusterInstant::from_epoch(Duration::ZERO);
    let mut core = SchedulerCore::new(
        Profile::default_profile(),
        QueueConfig {
            capacity: args.pods + args.init_pods + 1,
            ..QueueConfig::default()
        },
    );
    for i in 0..nodes {
        core.on_node_add(
            NodeBuilder::new(&format!("node-{i:05}"))
                .cpu("32")
                .memory("128Gi")
                .pods("110")
                .label("topology.kubernetes.io/zone", &format!("zone-{}", i % 3))
                .build(),
            now,
        );
    }
    if args.spread {
        add_workloads(&mut core);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    for i in 0..args.init_pods {
        let p = PodBuilder::new("init", &format!("init-{i}"))
            .container_requests(&[("cpu", "100m"), ("memory", "500Mi")])
            .build();
        core.on_pod_add(p, now)?;
    }
    drain(&mut core, now, &mut rng)?;

    for i in 0..args.pods {
        core.on_pod_add(measured_pod(i, args.spread), now)?;
    }
    let start = clock.now();
    let bound = drain(&mut core, now, &mut rng)?;
    let elapsed = clock.now().saturating_duration_since(start);
    let rate = bound as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    println!(
        "nodes={nodes} init_pods={} pods={bound} spread={} elapsed_ms={} pods_per_sec={rate:.0}",
        args.init_pods,
        args.spread,
        elapsed.as_millis()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let clock = Clock::real();
    for &n in &args.nodes {
        run(n, &args, &clock)?;
    }
    Ok(())
}
