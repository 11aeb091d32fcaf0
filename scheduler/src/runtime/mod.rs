//! The kube-scheduler process around [`crate::engine::SchedulerCore`]:
//! reflectors on nodes, pods and the workloads spreading looks at feed the
//! core's events; once the caches have synced and this process holds the
//! `kube-system/kube-scheduler` Lease, one loop runs scheduling cycles and
//! hands each decision to the IO: a binding task per assumed pod (bounded in
//! flight; a failed binding is forgotten and retried), and a writer task
//! for Events, the `PodScheduled` condition and preemption. Losing the
//! lease ends [`run`] with an error, as kube-scheduler exits.

pub mod writes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::Env;
use ackemu_base::clock::{Clock, ClusterInstant};
use ackemu_kube::api::apps::v1::{ReplicaSet, StatefulSet};
use ackemu_kube::api::core::v1::{Node, Pod, ReplicationController, Service};
use ackemu_kube::client::informer::{self, Notification, Reflector, ReflectorConfig};
use ackemu_kube::client::leader::{self, LeaderConfig};
use ackemu_kube::client::{Client, ClientConfig, ClientError, ListParams};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::cycle::Profile;
use crate::engine::{CycleOutcome, SchedulerCore, preempted_message, scheduled_message};
use crate::queue::QueueConfig;
use crate::snapshot::PodInfo;
use crate::trace::Trace;
use writes::{NORMAL, PodEvent, WARNING, Write, Writer};

/// How long [`run`] waits for its tasks after the stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The process's settings (flags in `main.rs`).
#[derive(Clone, Debug)]
pub struct Config {
    pub client: ClientConfig,
    /// Only pods with this `spec.schedulerName` are scheduled.
    pub scheduler_name: String,
    pub leader_elect: bool,
    pub lease_namespace: String,
    pub lease_name: String,
    /// This candidate's identity (`<hostname>_<uuid>`).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub queue: QueueConfig,
    /// `percentageOfNodesToScore` (0: adaptive).
    pub percentage_of_nodes_to_score: u32,
    /// Bindings in flight at once.
    pub parallel_bindings: usize,
    /// Capacity of the writer's queue (events, status patches).
    pub write_queue: usize,
    /// Reflector buffers (notifications waiting for the loop).
    pub watch_buffer: usize,
    /// Scheduling cycles run before the loop looks at new events again.
    pub cycles_per_round: usize,
    /// Record and print every cycle's trace (`--v=10`).
    pub trace: bool,
    /// Seed of the tie-breaking RNG (random when `None`).
    pub seed: Option<u64>,
}

impl Config {
    pub fn new(client: ClientConfig) -> Config {
        Config {
            client,
            scheduler_name: crate::cycle::DEFAULT_SCHEDULER_NAME.into(),
            leader_elect: true,
            lease_namespace: "kube-system".into(),
            lease_name: "kube-scheduler".into(),
            identity: format!("{}_{}", hostname(), uuid::Uuid::new_v4()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            queue: QueueConfig::default(),
            percentage_of_nodes_to_score: 0,
            parallel_bindings: 64,
            write_queue: 10_000,
            watch_buffer: 1024,
            cycles_per_round: 256,
            trace: false,
            seed: None,
        }
    }
}

/// The host name (`/proc/sys/kernel/hostname`), for the lease identity and
/// the events' reporting instance.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the API server: {0}")]
    Client(#[from] ClientError),
    #[error("leader election lost: lease {0} is held by another scheduler")]
    LeadershipLost(String),
}

fn decode<K: DeserializeOwned>(mut v: Value) -> Option<K> {
    if let Some(o) = v.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
    }
    match serde_json::from_value(v) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!("decoding a watched object: {e}");
            None
        }
    }
}

struct Reflectors {
    nodes: Reflector,
    pods: Reflector,
    // Spreading's inputs; a kind the API server does not serve is skipped.
    services: Option<Reflector>,
    replicasets: Option<Reflector>,
    statefulsets: Option<Reflector>,
    rcs: Option<Reflector>,
}

/// Waits for a notification of an optional reflector (never, without one).
async fn recv(r: &mut Option<Reflector>) -> Option<Notification> {
    match r {
        Some(r) => r.notifications.recv().await,
        None => std::future::pending().await,
    }
}

impl Reflectors {
    fn start(client: &Client, env: &Env, buffer: usize) -> Result<Reflectors, ClientError> {
        let cfg = ReflectorConfig {
            buffer,
            ..ReflectorConfig::default()
        };
        let start = |api: ackemu_kube::client::DynamicApi| {
            informer::start(
                api,
                ListParams::default(),
                cfg.clone(),
                env.clock.clone(),
                &env.tasks,
            )
        };
        fn optional<K: k8s_openapi::Resource + serde::Serialize + DeserializeOwned>(
            client: &Client,
            start: &dyn Fn(ackemu_kube::client::DynamicApi) -> Reflector,
        ) -> Option<Reflector> {
            match client.api::<K>(None) {
                Ok(api) => Some(start(api.dynamic().clone())),
                Err(e) => {
                    tracing::warn!("not watching {} for spreading: {e}", K::KIND);
                    None
                }
            }
        }
        Ok(Reflectors {
            nodes: start(client.api::<Node>(None)?.dynamic().clone()),
            pods: start(client.api::<Pod>(None)?.dynamic().clone()),
            services: optional::<Service>(client, &start),
            replicasets: optional::<ReplicaSet>(client, &start),
            statefulsets: optional::<StatefulSet>(client, &start),
            rcs: optional::<ReplicationController>(client, &start),
        })
    }

    fn all(&self) -> Vec<&Reflector> {
        let mut v = vec![&self.nodes, &self.pods];
        v.extend(
            [
                &self.services,
                &self.replicasets,
                &self.statefulsets,
                &self.rcs,
            ]
            .into_iter()
            .flatten(),
        );
        v
    }

    fn synced(&self) -> bool {
        self.all()
            .iter()
            .all(|r| *r.synced.borrow() && r.notifications.is_empty())
    }
}

/// Which reflector a notification came from.
#[derive(Clone, Copy)]
enum Source {
    Nodes,
    Pods,
    Services,
    ReplicaSets,
    StatefulSets,
    Rcs,
}

/// The outcome of one binding task.
struct Bound {
    pod: Arc<PodInfo>,
    node: String,
    /// When the pod was popped for the cycle that chose the node.
    popped: ClusterInstant,
    /// When the pod first entered a cycle (e2e latency).
    first_attempt: ClusterInstant,
    result: Result<(), ClientError>,
}

/// The scheduling loop's state.
struct Scheduler {
    core: SchedulerCore,
    clock: Clock,
    /// Last seen objects, for the core's update events.
    nodes: HashMap<String, Node>,
    pods: HashMap<String, Pod>,
    writer: Writer,
    profile_name: String,
    first_attempts: HashMap<String, ClusterInstant>,
}

impl Scheduler {
    fn apply(&mut self, source: Source, n: Notification) {
        let now = self.clock.now();
        let (v, deleted) = match n {
            Notification::Upsert(v) => (v, false),
            Notification::Delete(v) => (v, true),
        };
        let key = informer::key_of(&v);
        match source {
            Source::Nodes => {
                let Some(node) = decode::<Node>(v) else {
                    return;
                };
                if deleted {
                    self.nodes.remove(&key);
                    self.core.on_node_delete(&key);
                } else if let Some(old) = self.nodes.insert(key, node.clone()) {
                    self.core.on_node_update(&old, node, now);
                } else {
                    self.core.on_node_add(node, now);
                }
            }
            Source::Pods => {
                let Some(pod) = decode::<Pod>(v) else { return };
                let result = if deleted {
                    self.pods.remove(&key);
                    self.first_attempts.remove(&key);
                    self.core.on_pod_delete(&pod, now);
                    Ok(())
                } else if let Some(old) = self.pods.insert(key, pod.clone()) {
                    self.core.on_pod_update(&old, pod, now)
                } else {
                    self.core.on_pod_add(pod, now)
                };
                if let Err(e) = result {
                    tracing::warn!("queueing a pod: {e}");
                }
            }
            Source::Services => {
                let Some(s) = decode::<Service>(v) else {
                    return;
                };
                let (ns, name) = ns_name(&key);
                if deleted {
                    self.core.workloads_mut().remove_service(ns, name);
                } else {
                    self.core.workloads_mut().upsert_service(&s);
                }
            }
            Source::ReplicaSets => {
                let Some(rs) = decode::<ReplicaSet>(v) else {
                    return;
                };
                let (ns, name) = ns_name(&key);
                if deleted {
                    self.core.workloads_mut().remove_replica_set(ns, name);
                } else {
                    self.core.workloads_mut().upsert_replica_set(&rs);
                }
            }
            Source::StatefulSets => {
                let Some(ss) = decode::<StatefulSet>(v) else {
                    return;
                };
                let (ns, name) = ns_name(&key);
                if deleted {
                    self.core.workloads_mut().remove_stateful_set(ns, name);
                } else {
                    self.core.workloads_mut().upsert_stateful_set(&ss);
                }
            }
            Source::Rcs => {
                let Some(rc) = decode::<ReplicationController>(v) else {
                    return;
                };
                let (ns, name) = ns_name(&key);
                if deleted {
                    self.core
                        .workloads_mut()
                        .remove_replication_controller(ns, name);
                } else {
                    self.core.workloads_mut().upsert_replication_controller(&rc);
                }
            }
        }
    }

    fn publish_queue_gauges(&self) {
        let l = self.core.queue().lens();
        metrics::gauge!("scheduler_pending_pods", "queue" => "active").set(l.active as f64);
        metrics::gauge!("scheduler_pending_pods", "queue" => "backoff").set(l.backoff as f64);
        metrics::gauge!("scheduler_pending_pods", "queue" => "unschedulable")
            .set(l.unschedulable as f64);
    }

    /// Records a failed attempt: the event, the condition, preemption.
    async fn failed(
        &mut self,
        pod: Arc<PodInfo>,
        reason: &'static str,
        message: String,
        preempt: Option<crate::preemption::Candidate>,
    ) {
        let result = if reason == crate::engine::REASON_UNSCHEDULABLE {
            "unschedulable"
        } else {
            "error"
        };
        metrics::counter!("scheduler_schedule_attempts_total", "result" => result, "profile" => self.profile_name.clone()).increment(1);
        ackemu_base::v!(
            2,
            "\"Unable to schedule pod; no fit; waiting\" pod=\"{}\" err=\"{}\"",
            pod.key,
            message
        );
        let nominated = preempt.as_ref().map(|c| c.node.clone());
        if let Some(c) = &preempt {
            metrics::counter!("scheduler_preemption_attempts_total").increment(1);
            metrics::histogram!("scheduler_preemption_victims").record(c.victims.len() as f64);
            for v in &c.victims {
                tracing::info!(
                    "\"Preemptor pod preempted victim pod\" preemptor=\"{}\" victim=\"{}\" node=\"{}\"",
                    pod.key,
                    v.key,
                    c.node
                );
                self.writer.event(PodEvent::about(
                    v,
                    NORMAL,
                    "Preempted",
                    "Preempting",
                    preempted_message(&pod, &c.node),
                ));
                self.writer
                    .send(Write::DeletePod {
                        namespace: v.namespace.clone(),
                        name: v.name.clone(),
                        uid: v.uid.clone(),
                    })
                    .await;
            }
        }
        self.writer.event(PodEvent::about(
            &pod,
            WARNING,
            "FailedScheduling",
            "Scheduling",
            message.clone(),
        ));
        // The pod as the informer last saw it (not the queued copy).
        let Some(current) = self.pods.get(&pod.key) else {
            return;
        };
        let now = jiff::Timestamp::from_millisecond(self.clock.wall_unix_ms())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        if let Some(patch) = writes::unschedulable_patch(
            current,
            reason,
            &message,
            nominated.as_deref(),
            &ackemu_kube::duration::format_timestamp(now),
        ) {
            self.writer
                .send(Write::PodStatus {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    patch,
                })
                .await;
        }
    }

    /// A binding task finished.
    async fn bound(&mut self, b: Bound) {
        let now = self.clock.now();
        match b.result {
            Ok(()) => {
                self.core.binding_succeeded(&b.pod.key);
                self.first_attempts.remove(&b.pod.key);
                metrics::counter!("scheduler_schedule_attempts_total", "result" => "scheduled", "profile" => self.profile_name.clone()).increment(1);
                metrics::histogram!("scheduler_scheduling_attempt_duration_seconds", "result" => "scheduled", "profile" => self.profile_name.clone())
                    .record(now.duration_since(b.popped).as_secs_f64());
                metrics::histogram!("scheduler_e2e_scheduling_duration_seconds", "result" => "scheduled", "profile" => self.profile_name.clone())
                    .record(now.duration_since(b.first_attempt).as_secs_f64());
                ackemu_base::v!(
                    2,
                    "\"Successfully bound pod to node\" pod=\"{}\" node=\"{}\"",
                    b.pod.key,
                    b.node
                );
                self.writer.event(PodEvent::about(
                    &b.pod,
                    NORMAL,
                    "Scheduled",
                    "Binding",
                    scheduled_message(&b.pod, &b.node),
                ));
            }
            Err(e) => {
                tracing::warn!(
                    "\"Failed to bind pod\" pod=\"{}\" node=\"{}\" err=\"{e}\"",
                    b.pod.key,
                    b.node
                );
                self.core.binding_failed(&b.pod.key, &b.node, now);
                // A pod that is gone or already bound elsewhere is not retried
                // (the informer removes it from the queue).
                self.failed(
                    b.pod,
                    crate::engine::REASON_SCHEDULER_ERROR,
                    format!("binding rejected: {e}"),
                    None,
                )
                .await;
            }
        }
    }
}

fn ns_name(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// Runs the scheduler until the process is told to stop (`Ok`) or loses the
/// leader lease (`Err`).
pub async fn run(config: Config, env: Env) -> Result<(), RunError> {
    let client = Client::new(config.client.clone(), env.clock.clone(), env.tasks.clone())?;
    let mut reflectors = Reflectors::start(&client, &env, config.watch_buffer)?;
    let mut profile = Profile::default_profile();
    profile.scheduler_name = config.scheduler_name.clone();
    profile.percentage_of_nodes_to_score = config.percentage_of_nodes_to_score;
    let writer = Writer::start(
        client.clone(),
        env.clock.clone(),
        &env.tasks,
        config.write_queue,
        config.scheduler_name.clone(),
        format!("{}-{}", config.scheduler_name, hostname()),
    );
    let mut s = Scheduler {
        core: SchedulerCore::new(profile, config.queue.clone()),
        clock: env.clock.clone(),
        nodes: HashMap::new(),
        pods: HashMap::new(),
        writer,
        profile_name: config.scheduler_name.clone(),
        first_attempts: HashMap::new(),
    };
    let lease = format!("{}/{}", config.lease_namespace, config.lease_name);
    // Without election the process leads from the start; the sender lives
    // as long as the loop.
    let (_always_leader, mut leader_rx) = if config.leader_elect {
        let mut lc = LeaderConfig::new(
            &config.lease_namespace,
            &config.lease_name,
            &config.identity,
        );
        lc.lease_duration = config.lease_duration;
        lc.renew_deadline = config.renew_deadline;
        lc.retry_period = config.retry_period;
        tracing::info!("attempting to acquire leader lease {lease}...");
        (
            None,
            leader::start(client.clone(), lc, env.clock.clone(), &env.tasks),
        )
    } else {
        let (tx, rx) = watch::channel(true);
        (Some(tx), rx)
    };
    let mut rng: StdRng = match config.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };
    let parallel = config.parallel_bindings.max(1);
    let (bound_tx, mut bound_rx) = mpsc::channel::<Bound>(parallel);
    let mut in_flight = 0usize;
    let mut synced = false;
    let mut leading = false;
    let token = env.tasks.token();
    let tick = Duration::from_secs(1);
    let mut next_tick = env.clock.now() + tick;
    let result = loop {
        // Everything that already arrived, before deciding anything.
        for (src, r) in [
            (Source::Nodes, Some(&mut reflectors.nodes)),
            (Source::Pods, Some(&mut reflectors.pods)),
            (Source::Services, reflectors.services.as_mut()),
            (Source::ReplicaSets, reflectors.replicasets.as_mut()),
            (Source::StatefulSets, reflectors.statefulsets.as_mut()),
            (Source::Rcs, reflectors.rcs.as_mut()),
        ] {
            let Some(r) = r else { continue };
            while let Ok(n) = r.notifications.try_recv() {
                s.apply(src, n);
            }
        }
        while let Ok(b) = bound_rx.try_recv() {
            in_flight -= 1;
            s.bound(b).await;
        }
        if !synced && reflectors.synced() {
            synced = true;
            tracing::info!(
                "caches synced: {} nodes, {} pods",
                s.nodes.len(),
                s.pods.len()
            );
        }
        let is_leader = *leader_rx.borrow();
        if leading && !is_leader {
            break Err(RunError::LeadershipLost(lease.clone()));
        }
        if !leading && is_leader {
            leading = true;
            if config.leader_elect {
                tracing::info!("successfully acquired lease {lease}");
            }
        }
        env.health.set_ready(synced && leading);
        let now = env.clock.now();
        if now >= next_tick {
            s.core.tick(now);
            s.publish_queue_gauges();
            next_tick = now + tick;
        }

        // Scheduling cycles.
        let mut more = false;
        if synced && leading {
            let mut cycles = 0;
            while in_flight < parallel {
                if cycles == config.cycles_per_round {
                    more = true;
                    break;
                }
                cycles += 1;
                let popped = env.clock.now();
                let mut trace = if config.trace {
                    Trace::enabled()
                } else {
                    Trace::disabled()
                };
                let Some(outcome) = s.core.schedule_next(popped, &mut rng, &mut trace) else {
                    break;
                };
                for line in trace.take() {
                    if ackemu_base::logging::v_enabled(line.v) {
                        tracing::info!("{}", line.text);
                    }
                }
                match outcome {
                    CycleOutcome::Bind { pod, node, result } => {
                        let first = *s.first_attempts.entry(pod.key.clone()).or_insert(popped);
                        ackemu_base::v!(
                            3,
                            "\"Attempting to bind pod to node\" pod=\"{}\" node=\"{}\" evaluatedNodes={} feasibleNodes={}",
                            pod.key,
                            node,
                            result.evaluated_nodes,
                            result.feasible_nodes
                        );
                        in_flight += 1;
                        let client = client.clone();
                        let tx = bound_tx.clone();
                        env.tasks.spawn(format!("bind {}", pod.key), async move {
                            let r = writes::bind(&client, &pod, &node).await;
                            let _ = tx
                                .send(Bound {
                                    pod,
                                    node,
                                    popped,
                                    first_attempt: first,
                                    result: r,
                                })
                                .await;
                        });
                    }
                    CycleOutcome::Failed {
                        pod,
                        reason,
                        message,
                        preempt,
                    } => {
                        s.first_attempts.entry(pod.key.clone()).or_insert(popped);
                        let took = env.clock.now().duration_since(popped).as_secs_f64();
                        metrics::histogram!("scheduler_scheduling_attempt_duration_seconds", "result" => if reason == crate::engine::REASON_UNSCHEDULABLE { "unschedulable" } else { "error" }, "profile" => s.profile_name.clone()).record(took);
                        s.failed(pod, reason, message, preempt).await;
                    }
                }
            }
        }
        if more {
            tokio::task::yield_now().await;
            continue;
        }

        // Wait for something to happen.
        let wake = match s.core.next_wakeup() {
            Some(t) if t < next_tick => t,
            _ => next_tick,
        };
        let sleep = env.clock.sleep_until(wake);
        tokio::select! {
            n = reflectors.nodes.notifications.recv() => if let Some(n) = n { s.apply(Source::Nodes, n) },
            n = reflectors.pods.notifications.recv() => if let Some(n) = n { s.apply(Source::Pods, n) },
            n = recv(&mut reflectors.services) => if let Some(n) = n { s.apply(Source::Services, n) },
            n = recv(&mut reflectors.replicasets) => if let Some(n) = n { s.apply(Source::ReplicaSets, n) },
            n = recv(&mut reflectors.statefulsets) => if let Some(n) = n { s.apply(Source::StatefulSets, n) },
            n = recv(&mut reflectors.rcs) => if let Some(n) = n { s.apply(Source::Rcs, n) },
            b = bound_rx.recv() => if let Some(b) = b {
                in_flight -= 1;
                s.bound(b).await;
            },
            r = leader_rx.changed() => if r.is_err() && leading && config.leader_elect {
                break Err(RunError::LeadershipLost(lease.clone()));
            },
            _ = reflectors.nodes.synced.changed(), if !synced => {},
            _ = reflectors.pods.synced.changed(), if !synced => {},
            () = sleep => {},
            () = token.cancelled() => break Ok(()),
        }
    };
    env.health.set_ready(false);
    result
}
