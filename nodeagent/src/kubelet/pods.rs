//! The IO of the kubelet: the sync loop (pod updates from the API, PLEG
//! events, probe results, periodic resyncs, housekeeping — skipped while the
//! runtime is unhealthy), one worker per pod executing [`podsync`]'s actions
//! on the runtime, volumes (service-account token, ConfigMaps, Secrets,
//! emptyDir, resolv.conf, hosts), the status manager, the probe workers, and
//! the node status and Lease loops.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::Env;
use ackemu_base::clock::{Clock, ClusterInstant};
use ackemu_base::tasks::Tasks;
use ackemu_kube::api::core::v1::{Container, Pod, PodSpec};
use ackemu_kube::client::informer::{self, Notification, ReflectorConfig, Store};
use ackemu_kube::client::{Client, ClientError, ListParams};
use ackemu_proto::ackemu::node::v1 as pb;
use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::cri::{
    ANNOTATION_GRACE, Cri, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE,
    LABEL_POD_UID, PodRuntimeStatus, SandboxStatus,
};
use super::events::{Kind, ObjectRef, Recorder};
use super::goduration::go_duration;
use super::pleg::{Cache, Pleg, PodLifecycleEvent, RelistClock};
use super::podenv;
use super::podstatus;
use super::podsync::{self, init_containers};
use super::probe::{self, ProbeKind, Tracker};
use super::{KubeletConfig, node};

/// How often a pod is resynced without a trigger.
const RESYNC: Duration = Duration::from_secs(10);
/// Retry after a failed sync.
const RETRY: Duration = Duration::from_secs(2);
/// The runtime counts as down after this long without a good status check.
const RUNTIME_DOWN_AFTER: Duration = Duration::from_secs(30);
/// Default termination grace period.
const DEFAULT_GRACE_S: i64 = 30;
/// Service-account token lifetime requested (as kube-apiserver's admission sets it).
const TOKEN_TTL_S: i64 = 3607;

/// Waiting reasons of a pod's containers: name → (reason, message).
type Waiting = HashMap<String, (String, String)>;

struct Slot {
    pod: Option<Pod>,
    name: String,
    namespace: String,
    grace_s: i64,
    notify: Arc<Notify>,
    next_sync: Option<ClusterInstant>,
}

/// Volumes of a pod on disk, and when its token must be refreshed.
struct PodVolumes {
    paths: HashMap<String, PathBuf>,
    refresh_at_ms: Option<i64>,
}

#[derive(Default)]
struct ProbeState {
    results: HashMap<(String, ProbeKind), bool>,
    liveness_failed: HashSet<String>,
    startup_failed: HashSet<String>,
    workers: HashMap<(String, ProbeKind), CancellationToken>,
}

struct Inner {
    cfg: Arc<KubeletConfig>,
    clock: Clock,
    tasks: Tasks,
    client: Client,
    cri: Cri,
    recorder: Recorder,
    runtime_name: String,
    slots: Mutex<BTreeMap<String, Slot>>,
    services: Mutex<Option<Store>>,
    backoff: Mutex<Backoff>,
    waiting: Mutex<HashMap<String, Waiting>>,
    probes: Mutex<ProbeState>,
    last_status: Mutex<HashMap<String, Value>>,
    volumes: Mutex<HashMap<String, PodVolumes>>,
    relist: RelistClock,
    pleg_cache: Cache,
    runtime_ok: Mutex<Option<ClusterInstant>>,
    pleg_tx: mpsc::Sender<PodLifecycleEvent>,
    pleg_rx: Mutex<Option<mpsc::Receiver<PodLifecycleEvent>>>,
    wake_tx: mpsc::Sender<String>,
    wake_rx: Mutex<Option<mpsc::Receiver<String>>>,
}

/// The kubelet's state; cheap to clone.
#[derive(Clone)]
pub struct Kubelet {
    inner: Arc<Inner>,
}

enum Outcome {
    /// The pod is gone from the API and the node: the worker ends.
    Done,
    /// Sync again after this long (or on the next trigger).
    Requeue(Duration),
}

fn pod_ref(pod: &Pod, field_path: &str) -> ObjectRef {
    ObjectRef {
        kind: "Pod".into(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        field_path: field_path.into(),
    }
}

fn container_path(c: &Container, is_init: bool) -> String {
    format!(
        "spec.{}{{{}}}",
        if is_init {
            "initContainers"
        } else {
            "containers"
        },
        c.name
    )
}

/// `name_namespace(uid)`, kubelet's `format.Pod`.
fn pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

fn spec_of(pod: &Pod) -> PodSpec {
    pod.spec.clone().unwrap_or_default()
}

fn write_file(path: &std::path::Path, data: &[u8]) -> Result<(), String> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
    }
    std::fs::write(path, data).map_err(|e| format!("writing {}: {e}", path.display()))
}

impl crate::server::PodProvider for Kubelet {
    fn pods(&self) -> Vec<Pod> {
        self.k()
            .slots
            .lock()
            .values()
            .filter_map(|s| s.pod.clone())
            .collect()
    }
}

impl Kubelet {
    /// The kubelet over `client` and `cri`.
    pub fn new(
        cfg: Arc<KubeletConfig>,
        env: &Env,
        client: Client,
        cri: Cri,
        recorder: Recorder,
        runtime_name: String,
    ) -> Kubelet {
        let (pleg_tx, pleg_rx) = mpsc::channel(1000);
        let (wake_tx, wake_rx) = mpsc::channel(1000);
        Kubelet {
            inner: Arc::new(Inner {
                cfg,
                clock: env.clock.clone(),
                tasks: env.tasks.clone(),
                client,
                cri,
                recorder,
                runtime_name,
                slots: Mutex::default(),
                services: Mutex::default(),
                backoff: Mutex::new(Backoff::new(
                    Duration::from_secs(10),
                    Duration::from_secs(300),
                )),
                waiting: Mutex::default(),
                probes: Mutex::default(),
                last_status: Mutex::default(),
                volumes: Mutex::default(),
                relist: RelistClock::default(),
                pleg_cache: Cache::default(),
                runtime_ok: Mutex::default(),
                pleg_tx,
                pleg_rx: Mutex::new(Some(pleg_rx)),
                wake_tx,
                wake_rx: Mutex::new(Some(wake_rx)),
            }),
        }
    }

    fn k(&self) -> &Inner {
        &self.inner
    }

    /// `runtimeErrors()`: why pods must not be synced and the node is not
    /// Ready.
    pub fn runtime_errors(&self) -> Vec<String> {
        let k = self.k();
        let now = k.clock.now();
        let mut errs = Vec::new();
        match *k.runtime_ok.lock() {
            None => errs.push("container runtime status check may not have completed yet".into()),
            Some(t) if now.saturating_duration_since(t) > RUNTIME_DOWN_AFTER => {
                errs.push("container runtime is down".into())
            }
            Some(_) => {}
        }
        if let Err(e) = k.relist.healthy(now, k.cfg.pleg_relist_threshold) {
            errs.push(format!("PLEG is not healthy: {e}"));
        }
        errs
    }

    /// `updateRuntimeUp` every 5s: the runtime's Status call.
    pub fn start_runtime_check(&self) {
        let me = self.clone();
        let stop = self.k().tasks.token();
        self.k().tasks.spawn("kubelet/runtime-status", async move {
            let k = me.k();
            let mut tick = k.clock.interval(Duration::from_secs(5));
            let mut client = pb::runtime_service_client::RuntimeServiceClient::new(
                crate::uds::channel(&k.cfg.runtime_socket),
            );
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match client.status(pb::StatusRequest { verbose: false }).await {
                    Ok(_) => *k.runtime_ok.lock() = Some(k.clock.now()),
                    Err(e) => {
                        tracing::error!("Container runtime status check failed: {}", e.message())
                    }
                }
            }
        });
    }

    /// Start PLEG.
    pub fn start_pleg(&self) {
        let k = self.k();
        let pleg = Pleg {
            cri: k.cri.clone(),
            clock: k.clock.clone(),
            period: k.cfg.pleg_relist_period,
            relist: k.relist.clone(),
            cache: k.pleg_cache.clone(),
            events: k.pleg_tx.clone(),
        };
        k.tasks
            .spawn("kubelet/pleg relist", pleg.run(k.tasks.token()));
    }

    /// Node status every `--node-status-update-frequency`, Lease every
    /// quarter of `--node-lease-duration-seconds`.
    pub fn start_node_status(&self, spec: node::NodeSpec, node_uid: String) {
        let me = self.clone();
        let stop = self.k().tasks.token();
        self.k().tasks.spawn("kubelet/node-status", async move {
            let k = me.k();
            let mut prev: Vec<Value> = Vec::new();
            let mut tick = k.clock.interval(k.cfg.node_status_update_frequency);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let errs = me.runtime_errors();
                match node::update_status(
                    &k.client,
                    &spec,
                    &prev,
                    &errs,
                    k.clock.wall_unix_ms(),
                    &k.recorder,
                )
                .await
                {
                    Ok(c) => prev = c,
                    Err(e) => tracing::error!("Error updating node status, will retry: {e}"),
                }
            }
        });
        let me = self.clone();
        let stop = self.k().tasks.token();
        let name = self.k().cfg.node_name.clone();
        self.k().tasks.spawn("kubelet/node-lease", async move {
            let k = me.k();
            let period = Duration::from_secs((k.cfg.node_lease_duration_seconds.max(4) / 4) as u64);
            let mut tick = k.clock.interval(period);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = node::renew_lease(
                    &k.client,
                    &name,
                    &node_uid,
                    k.cfg.node_lease_duration_seconds,
                    k.clock.wall_unix_ms(),
                )
                .await
                {
                    tracing::error!("failed to update lease, will retry: {e}");
                }
            }
        });
    }

    /// The sync loop, until stopped.
    pub async fn run(&self) {
        let k = self.k();
        let stop = k.tasks.token();
        let pods_info = k
            .client
            .registry()
            .by_api_version_kind("v1", "Pod")
            .cloned()
            .expect("the registry serves v1 Pod");
        let svc_info = k
            .client
            .registry()
            .by_api_version_kind("v1", "Service")
            .cloned()
            .expect("the registry serves v1 Service");
        let mut pods = informer::start(
            k.client.resource(&pods_info, None),
            ListParams {
                field_selector: Some(format!("spec.nodeName={}", k.cfg.node_name)),
                ..Default::default()
            },
            ReflectorConfig::default(),
            k.clock.clone(),
            &k.tasks,
        );
        let services = informer::start(
            k.client.resource(&svc_info, None),
            ListParams::default(),
            ReflectorConfig::default(),
            k.clock.clone(),
            &k.tasks,
        );
        *k.services.lock() = Some(services.store.clone());
        // Drain service notifications: the store is what we read.
        let mut svc_rx = services.notifications;
        k.tasks.spawn("kubelet/services", async move {
            while svc_rx.recv().await.is_some() {}
        });
        let mut pleg_rx = k.pleg_rx.lock().take().expect("run is called once");
        let mut wake_rx = k.wake_rx.lock().take().expect("run is called once");
        let mut sync_tick = k.clock.interval(Duration::from_secs(1));
        let mut housekeeping = k.clock.interval(Duration::from_secs(2));
        let base = Duration::from_millis(100);
        let mut delay = base;
        loop {
            let errs = self.runtime_errors();
            if !errs.is_empty() {
                tracing::info!("skipping pod synchronization - [{}]", errs.join(" "));
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = k.clock.sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
            delay = base;
            tokio::select! {
                () = stop.cancelled() => return,
                n = pods.notifications.recv() => match n {
                    Some(n) => self.handle_pod(n),
                    None => return,
                },
                e = pleg_rx.recv() => if let Some(e) = e {
                    self.wake(&e.uid);
                },
                u = wake_rx.recv() => if let Some(u) = u {
                    self.wake(&u);
                },
                _ = sync_tick.tick() => {
                    let now = k.clock.now();
                    let due: Vec<Arc<Notify>> = k
                        .slots
                        .lock()
                        .values_mut()
                        .filter(|s| s.next_sync.is_some_and(|t| t <= now))
                        .map(|s| {
                            s.next_sync = None;
                            s.notify.clone()
                        })
                        .collect();
                    for n in due {
                        n.notify_one();
                    }
                }
                _ = housekeeping.tick() => {
                    if *pods.synced.borrow() {
                        self.housekeeping().await;
                    }
                }
            }
        }
    }

    fn wake(&self, uid: &str) {
        if let Some(s) = self.k().slots.lock().get(uid) {
            s.notify.notify_one();
        }
    }

    fn handle_pod(&self, n: Notification) {
        let (obj, deleted) = match n {
            Notification::Upsert(v) => (v, false),
            Notification::Delete(v) => (v, true),
        };
        let pod: Pod = match serde_json::from_value(obj) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("kubelet: ignoring a pod that does not decode: {e}");
                return;
            }
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            return;
        }
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or(pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(DEFAULT_GRACE_S);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let mut slots = self.k().slots.lock();
        if deleted && !slots.contains_key(&uid) {
            return;
        }
        let slot = slots.entry(uid.clone()).or_insert_with(|| {
            if !deleted {
                tracing::info!("SyncLoop ADD source=\"api\" pods=[\"{namespace}/{name}\"]");
            }
            let notify = Arc::new(Notify::new());
            self.spawn_worker(&uid, &namespace, &name, notify.clone());
            Slot {
                pod: None,
                name: name.clone(),
                namespace: namespace.clone(),
                grace_s: grace,
                notify,
                next_sync: None,
            }
        });
        slot.grace_s = grace;
        if deleted {
            tracing::info!("SyncLoop REMOVE source=\"api\" pods=[\"{namespace}/{name}\"]");
            slot.pod = None;
        } else {
            slot.pod = Some(pod);
        }
        slot.notify.notify_one();
    }

    fn spawn_worker(&self, uid: &str, namespace: &str, name: &str, notify: Arc<Notify>) {
        let me = self.clone();
        let uid = uid.to_string();
        let stop = self.k().tasks.token();
        self.k().tasks.spawn(
            format!("kubelet/pod-worker {namespace}/{name}"),
            async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = notify.notified() => {}
                    }
                    match me.sync_pod(&uid).await {
                        Outcome::Done => {
                            let k = me.k();
                            k.slots.lock().remove(&uid);
                            k.waiting.lock().remove(&uid);
                            k.last_status.lock().remove(&uid);
                            k.volumes.lock().remove(&uid);
                            k.pleg_cache.lock().remove(&uid);
                            return;
                        }
                        Outcome::Requeue(d) => {
                            let at = me.k().clock.now() + d;
                            if let Some(s) = me.k().slots.lock().get_mut(&uid) {
                                s.next_sync = Some(s.next_sync.map_or(at, |t| t.min(at)));
                            }
                        }
                    }
                }
            },
        );
    }

    /// Sandboxes of pods the API no longer has get a worker that removes them.
    async fn housekeeping(&self) {
        let k = self.k();
        let Ok(listed) = k.cri.get_pods().await else {
            return;
        };
        let mut slots = k.slots.lock();
        for p in listed {
            if p.uid.is_empty() || slots.contains_key(&p.uid) {
                continue;
            }
            let (ns, name) = p.name.split_once('/').unwrap_or(("", ""));
            tracing::info!(
                "Cleaning up orphaned pod sandboxes podUID=\"{}\" pod=\"{}\"",
                p.uid,
                p.name
            );
            let notify = Arc::new(Notify::new());
            self.spawn_worker(&p.uid, ns, name, notify.clone());
            notify.notify_one();
            slots.insert(
                p.uid.clone(),
                Slot {
                    pod: None,
                    name: name.into(),
                    namespace: ns.into(),
                    grace_s: 2,
                    notify,
                    next_sync: None,
                },
            );
        }
    }

    async fn sync_pod(&self, uid: &str) -> Outcome {
        let k = self.k();
        let Some((pod, name, ns, grace)) = k.slots.lock().get(uid).map(|s| {
            (
                s.pod.clone(),
                s.name.clone(),
                s.namespace.clone(),
                s.grace_s,
            )
        }) else {
            return Outcome::Done;
        };
        let rt = match k.cri.get_pod_status(uid, &name, &ns).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(
                    "Error syncing pod, skipping pod=\"{ns}/{name}\" podUID=\"{uid}\": {e}"
                );
                return Outcome::Requeue(RETRY);
            }
        };
        k.pleg_cache.lock().insert(uid.to_string(), rt.clone());
        match pod {
            None => {
                if self.kill_pod(&rt, None, grace).await.is_err() {
                    return Outcome::Requeue(RETRY);
                }
                if self.remove_sandboxes(&rt).await.is_err() {
                    return Outcome::Requeue(RETRY);
                }
                self.stop_probes(|_| true, uid);
                let _ = std::fs::remove_dir_all(k.cfg.root_dir.join("pods").join(uid));
                k.backoff
                    .lock()
                    .forget_prefix(&format!("{ns}/{name}/{uid}/"));
                Outcome::Done
            }
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                self.terminate(&pod, rt, grace).await
            }
            Some(pod) => self.sync_running(&pod, rt).await,
        }
    }

    /// Graceful termination of a pod being deleted, then its deletion from
    /// the API with grace 0 (the status manager's last step).
    async fn terminate(&self, pod: &Pod, rt: PodRuntimeStatus, grace: i64) -> Outcome {
        let k = self.k();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.kill_pod(&rt, Some(pod), grace).await.is_err() {
            return Outcome::Requeue(RETRY);
        }
        self.stop_probes(|_| true, &uid);
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        if let Ok(after) = k.cri.get_pod_status(&uid, &name, &ns).await {
            self.send_status(pod, &after, true).await;
            if self.remove_sandboxes(&after).await.is_err() {
                return Outcome::Requeue(RETRY);
            }
        } else {
            return Outcome::Requeue(RETRY);
        }
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
        let body = json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
        match k
            .client
            .request(
                "DELETE",
                &path,
                Some(("application/json", body.to_string().into_bytes())),
            )
            .await
        {
            Ok(_) => {
                tracing::info!("Pod fully terminated and removed from etcd pod=\"{ns}/{name}\"");
                Outcome::Requeue(RESYNC)
            }
            Err(e) if e.is_not_found() || e.is_conflict() => Outcome::Requeue(RESYNC),
            Err(e) => {
                tracing::warn!("Failed to delete status for pod pod=\"{ns}/{name}\": {e}");
                Outcome::Requeue(RETRY)
            }
        }
    }

    async fn sync_running(&self, pod: &Pod, mut rt: PodRuntimeStatus) -> Outcome {
        let k = self.k();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = spec_of(pod);
        let api_phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if api_phase == "Succeeded" || api_phase == "Failed" {
            // Terminal: nothing runs again; release the sandbox.
            let _ = self.kill_pod(&rt, Some(pod), 0).await;
            return Outcome::Requeue(RESYNC * 6);
        }
        let unhealthy = |id: &str| -> Option<String> {
            let p = k.probes.lock();
            let name = rt
                .containers
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.name.clone())
                .unwrap_or_default();
            if p.startup_failed.contains(id) {
                Some(format!(
                    "Container {name} failed startup probe, will be restarted"
                ))
            } else if p.liveness_failed.contains(id) {
                Some(format!(
                    "Container {name} failed liveness probe, will be restarted"
                ))
            } else {
                None
            }
        };
        let actions = podsync::compute_actions(&spec, &rt, &unhealthy);
        let mut requeue = RESYNC;
        let grace = spec
            .termination_grace_period_seconds
            .unwrap_or(DEFAULT_GRACE_S);
        if actions.kill_pod && self.kill_pod(&rt, Some(pod), grace).await.is_err() {
            return Outcome::Requeue(RETRY);
        }
        for kill in &actions.kill {
            let is_init = init_containers(&spec).iter().any(|c| c.name == kill.name);
            let r = ObjectRef {
                field_path: format!(
                    "spec.{}{{{}}}",
                    if is_init {
                        "initContainers"
                    } else {
                        "containers"
                    },
                    kill.name
                ),
                ..pod_ref(pod, "")
            };
            k.recorder
                .record(&r, Kind::Normal, "Killing", &kill.message);
            if let Err(e) = k.cri.stop_container(&kill.id, grace).await {
                k.recorder.record(
                    &pod_ref(pod, ""),
                    Kind::Warning,
                    "FailedKillPod",
                    &format!("error killing pod: {e}"),
                );
                return Outcome::Requeue(RETRY);
            }
            let mut p = k.probes.lock();
            p.liveness_failed.remove(&kill.id);
            p.startup_failed.remove(&kill.id);
        }
        if actions.create_sandbox {
            if let Err(e) = self.prepare_volumes(pod).await {
                k.recorder
                    .record(&pod_ref(pod, ""), Kind::Warning, "FailedMount", &e);
                return Outcome::Requeue(RETRY);
            }
            let config = self.sandbox_config(pod, actions.sandbox_attempt);
            if let Err(e) = k.cri.run_pod_sandbox(config).await {
                k.recorder.record(
                    &pod_ref(pod, ""),
                    Kind::Warning,
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e}"),
                );
                self.send_status(pod, &rt, false).await;
                return Outcome::Requeue(RETRY);
            }
            match k.cri.get_pod_status(&uid, &rt.name, &rt.namespace).await {
                Ok(r) => rt = r,
                Err(_) => return Outcome::Requeue(RETRY),
            }
        }
        if actions.next_init.is_some() || !actions.start.is_empty() {
            if let Err(e) = self.prepare_volumes(pod).await {
                k.recorder
                    .record(&pod_ref(pod, ""), Kind::Warning, "FailedMount", &e);
                return Outcome::Requeue(RETRY);
            }
            let Some(sb) = rt.sandbox().cloned().filter(|s| s.ready) else {
                return Outcome::Requeue(RETRY);
            };
            let sb_config = self.sandbox_config(pod, sb.attempt);
            if let Some(i) = actions.next_init {
                let c = init_containers(&spec)[i].clone();
                if let Some(d) = self
                    .start_container(pod, &c, true, &sb, &sb_config, &rt)
                    .await
                {
                    requeue = requeue.min(d);
                }
            }
            for &i in &actions.start {
                let c = spec.containers[i].clone();
                if let Some(d) = self
                    .start_container(pod, &c, false, &sb, &sb_config, &rt)
                    .await
                {
                    requeue = requeue.min(d);
                }
            }
            match k.cri.get_pod_status(&uid, &rt.name, &rt.namespace).await {
                Ok(r) => rt = r,
                Err(_) => return Outcome::Requeue(RETRY),
            }
        }
        self.refresh_token_if_due(pod).await;
        self.ensure_probes(pod, &rt);
        let phase = self.send_status(pod, &rt, false).await;
        if phase.as_deref() == Some("Succeeded") || phase.as_deref() == Some("Failed") {
            let _ = self.kill_pod(&rt, Some(pod), 0).await;
        }
        Outcome::Requeue(requeue)
    }

    /// Stop every running container (with the grace period, concurrently)
    /// and every ready sandbox.
    async fn kill_pod(
        &self,
        rt: &PodRuntimeStatus,
        pod: Option<&Pod>,
        grace: i64,
    ) -> Result<(), ()> {
        let k = self.k();
        let running: Vec<_> = rt
            .containers
            .iter()
            .filter(|c| c.state == pb::ContainerState::ContainerRunning)
            .collect();
        let stops = running.iter().map(|c| {
            if let Some(p) = pod {
                let is_init = init_containers(&spec_of(p))
                    .iter()
                    .any(|i| i.name == c.name);
                let r = ObjectRef {
                    field_path: format!(
                        "spec.{}{{{}}}",
                        if is_init {
                            "initContainers"
                        } else {
                            "containers"
                        },
                        c.name
                    ),
                    ..pod_ref(p, "")
                };
                k.recorder.record(
                    &r,
                    Kind::Normal,
                    "Killing",
                    &format!("Stopping container {}", c.name),
                );
            }
            let g = c.grace_period_s.map_or(grace, |cg| cg.min(grace)).max(0);
            let cri = k.cri.clone();
            let id = c.id.clone();
            async move { cri.stop_container(&id, g).await }
        });
        let results = futures::future::join_all(stops).await;
        let errs: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err())
            .filter(|e| !e.is_not_found())
            .map(|e| e.to_string())
            .collect();
        if !errs.is_empty() {
            if let Some(p) = pod {
                k.recorder.record(
                    &pod_ref(p, ""),
                    Kind::Warning,
                    "FailedKillPod",
                    &format!("error killing pod: {}", errs.join(", ")),
                );
            }
            return Err(());
        }
        for sb in rt.sandboxes.iter().filter(|s| s.ready) {
            if let Err(e) = k.cri.stop_pod_sandbox(&sb.id).await
                && !e.is_not_found()
            {
                if let Some(p) = pod {
                    k.recorder.record(
                        &pod_ref(p, ""),
                        Kind::Warning,
                        "FailedKillPod",
                        &format!(
                            "error killing pod: failed to \"KillPodSandbox\" for \"{}\" with KillPodSandboxError: \"{e}\"",
                            rt.uid
                        ),
                    );
                }
                return Err(());
            }
        }
        Ok(())
    }

    async fn remove_sandboxes(&self, rt: &PodRuntimeStatus) -> Result<(), ()> {
        for sb in &rt.sandboxes {
            if let Err(e) = self.k().cri.remove_pod_sandbox(&sb.id).await
                && !e.is_not_found()
            {
                tracing::error!(
                    "Failed to remove sandbox {} of pod {}/{}: {e}",
                    sb.id,
                    rt.namespace,
                    rt.name
                );
                return Err(());
            }
        }
        Ok(())
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.k().cfg.root_dir.join("pods").join(uid)
    }

    fn pod_dns(&self, pod: &Pod) -> podenv::Dns {
        let k = self.k();
        let spec = spec_of(pod);
        let host = podenv::parse_resolv_conf(
            &std::fs::read_to_string(&k.cfg.resolv_conf).unwrap_or_default(),
        );
        let cfg = spec
            .dns_config
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok());
        podenv::pod_dns(
            spec.dns_policy.as_deref(),
            cfg.as_ref(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            &k.cfg.cluster_dns,
            &k.cfg.cluster_domain,
            &host,
        )
    }

    fn sandbox_config(&self, pod: &Pod, attempt: u32) -> pb::PodSandboxConfig {
        let k = self.k();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = spec_of(pod);
        let mut labels: HashMap<String, String> = pod
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        labels.insert(LABEL_POD_NAME.into(), name.clone());
        labels.insert(LABEL_POD_NAMESPACE.into(), ns.clone());
        labels.insert(LABEL_POD_UID.into(), uid.clone());
        let dns = self.pod_dns(pod);
        pb::PodSandboxConfig {
            metadata: Some(pb::PodSandboxMetadata {
                name: name.clone(),
                uid: uid.clone(),
                namespace: ns.clone(),
                attempt,
            }),
            hostname: spec.hostname.clone().unwrap_or(name.clone()),
            log_directory: k
                .cfg
                .pod_logs_dir
                .join(format!("{ns}_{name}_{uid}"))
                .display()
                .to_string(),
            dns_config: Some(pb::DnsConfig {
                servers: dns.servers,
                searches: dns.searches,
                options: dns.options,
            }),
            port_mappings: Vec::new(),
            labels,
            annotations: pod
                .metadata
                .annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            cgroup_parent: String::new(),
        }
    }

    /// Start one container (after the back-off check): config, create,
    /// start, with events. Returns when to look again if it is backing off.
    async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        is_init: bool,
        sb: &SandboxStatus,
        sb_config: &pb::PodSandboxConfig,
        rt: &PodRuntimeStatus,
    ) -> Option<Duration> {
        let k = self.k();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let r = pod_ref(pod, &container_path(c, is_init));
        let key = format!("{ns}/{name}/{uid}/{}", c.name);
        let latest = rt.latest(&c.name).cloned();
        if let Some(prev) = latest
            .as_ref()
            .filter(|p| p.state == pb::ContainerState::ContainerExited)
        {
            let now_ms = k.clock.wall_unix_ms();
            let finished_ms = prev.finished_at / 1_000_000;
            let mut b = k.backoff.lock();
            if b.in_backoff_since(&key, finished_ms, now_ms) {
                let msg = format!(
                    "back-off {} restarting failed container={} pod={}",
                    go_duration(b.get(&key)),
                    c.name,
                    pod_desc(pod)
                );
                let until = b.until_ms(&key, finished_ms);
                drop(b);
                k.recorder.record(
                    &r,
                    Kind::Warning,
                    "BackOff",
                    &format!(
                        "Back-off restarting failed container {} in pod {}",
                        c.name,
                        pod_desc(pod)
                    ),
                );
                self.set_waiting(&uid, &c.name, "CrashLoopBackOff", &msg);
                let left = Duration::from_millis((until - now_ms).max(0) as u64);
                return Some(left + Duration::from_millis(100));
            }
            b.next(&key, finished_ms);
        }
        let attempt = latest.as_ref().map_or(0, |l| l.attempt + 1);
        if let Some(wait) = self.ensure_image(pod, c, &r, sb_config).await {
            return wait;
        }
        let config = match self.container_config(pod, c, sb, attempt).await {
            Ok(cfg) => cfg,
            Err(e) => {
                k.recorder
                    .record(&r, Kind::Warning, "Failed", &format!("Error: {e}"));
                self.set_waiting(&uid, &c.name, "CreateContainerConfigError", &e);
                return None;
            }
        };
        // Keep the newest exited instance (for logs and lastState), drop older ones.
        for old in rt.all_named(&c.name).skip(1) {
            if old.state == pb::ContainerState::ContainerExited {
                let _ = k.cri.remove_container(&old.id).await;
            }
        }
        let id = match k
            .cri
            .create_container(&sb.id, config, sb_config.clone())
            .await
        {
            Ok(id) => id,
            Err(e) => {
                k.recorder
                    .record(&r, Kind::Warning, "Failed", &format!("Error: {e}"));
                self.set_waiting(&uid, &c.name, "CreateContainerError", &e.to_string());
                return None;
            }
        };
        k.recorder.record(
            &r,
            Kind::Normal,
            "Created",
            &format!("Created container: {}", c.name),
        );
        if let Err(e) = k.cri.start_container(&id).await {
            k.recorder.record(
                &r,
                Kind::Warning,
                "Failed",
                &format!("Error: failed to start container \"{}\": {e}", c.name),
            );
            self.set_waiting(&uid, &c.name, "RunContainerError", &e.to_string());
            return None;
        }
        k.recorder.record(
            &r,
            Kind::Normal,
            "Started",
            &format!("Started container {}", c.name),
        );
        if let Some(w) = k.waiting.lock().get_mut(&uid) {
            w.remove(&c.name);
        }
        None
    }

    /// `EnsureImageExists`: pull the container's image if its policy and
    /// the node say so, with the pod's pull secrets, reporting as the
    /// kubelet does. `Some(when to look again)` when the container cannot
    /// start yet.
    async fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        r: &ObjectRef,
        sb_config: &pb::PodSandboxConfig,
    ) -> Option<Option<Duration>> {
        use super::images::{self, Decision, PullPolicy};
        let k = self.k();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let image = c.image.clone().unwrap_or_default();
        let present = if images::preloaded(&image) {
            true
        } else {
            match k.cri.image_status(&image).await {
                Ok(i) => i.is_some(),
                Err(e) => {
                    let msg = format!("Failed to inspect image {image:?}: {e}");
                    k.recorder.record(r, Kind::Warning, "InspectFailed", &msg);
                    self.set_waiting(&uid, &c.name, "ImageInspectError", &msg);
                    return Some(None);
                }
            }
        };
        let policy = if images::preloaded(&image) {
            PullPolicy::IfNotPresent
        } else {
            PullPolicy::of(c.image_pull_policy.as_deref(), &image)
        };
        match images::decide(policy, present) {
            Decision::Present => {
                k.recorder
                    .record(r, Kind::Normal, "Pulled", &images::already_present(&image));
                None
            }
            Decision::NeverPull => {
                let msg = images::never_pull(&image);
                k.recorder
                    .record(r, Kind::Warning, "ErrImageNeverPull", &msg);
                self.set_waiting(&uid, &c.name, "ErrImageNeverPull", &msg);
                Some(None)
            }
            Decision::Pull => {
                let key = format!("{ns}/{name}/{uid}/pull:{image}");
                let now_ms = k.clock.wall_unix_ms();
                let backing_off = k.backoff.lock().in_backoff_since_update(&key, now_ms);
                if let Some(until) = backing_off {
                    let msg = images::back_off(&image);
                    k.recorder.record(r, Kind::Normal, "BackOff", &msg);
                    self.set_waiting(&uid, &c.name, "ImagePullBackOff", &msg);
                    let left = Duration::from_millis((until - now_ms).max(0) as u64);
                    return Some(Some(left + Duration::from_millis(100)));
                }
                k.recorder
                    .record(r, Kind::Normal, "Pulling", &images::pulling(&image));
                let mut secrets = Vec::new();
                for s in pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.image_pull_secrets.as_ref())
                    .into_iter()
                    .flatten()
                {
                    match self.get_object("secret", &ns, &s.name).await {
                        Ok(v) => secrets.push(v),
                        Err(e) => tracing::warn!(
                            "Unable to retrieve pull secret {ns}/{}: {e}; the image pull may not succeed",
                            s.name
                        ),
                    }
                }
                let creds = images::credentials(&secrets, images::registry(&image).unwrap_or(""));
                let started = k.clock.now();
                let mut result = Err(String::new());
                let attempts: Vec<Option<pb::AuthConfig>> = if creds.is_empty() {
                    vec![None]
                } else {
                    creds.into_iter().map(Some).collect()
                };
                for auth in attempts {
                    result = k
                        .cri
                        .pull_image(&image, auth, sb_config.clone())
                        .await
                        .map_err(|e| e.to_string());
                    if result.is_ok() {
                        break;
                    }
                }
                match result {
                    Ok(_) => {
                        let secs = k
                            .clock
                            .now()
                            .saturating_duration_since(started)
                            .as_secs_f64();
                        let size = match k.cri.image_status(&image).await {
                            Ok(Some(i)) => i.size,
                            _ => 0,
                        };
                        k.backoff.lock().forget_prefix(&key);
                        k.recorder.record(
                            r,
                            Kind::Normal,
                            "Pulled",
                            &images::pulled(&image, secs, size),
                        );
                        None
                    }
                    Err(err) => {
                        k.recorder.record(
                            r,
                            Kind::Warning,
                            "Failed",
                            &images::failed(&image, &err),
                        );
                        k.recorder
                            .record(r, Kind::Warning, "Failed", "Error: ErrImagePull");
                        self.set_waiting(&uid, &c.name, "ErrImagePull", &err);
                        let mut b = k.backoff.lock();
                        b.next(&key, now_ms);
                        Some(Some(b.get(&key) + Duration::from_millis(100)))
                    }
                }
            }
        }
    }

    fn set_waiting(&self, uid: &str, name: &str, reason: &str, message: &str) {
        self.k()
            .waiting
            .lock()
            .entry(uid.to_string())
            .or_default()
            .insert(name.to_string(), (reason.to_string(), message.to_string()));
    }

    async fn container_config(
        &self,
        pod: &Pod,
        c: &Container,
        sb: &SandboxStatus,
        attempt: u32,
    ) -> Result<pb::ContainerConfig, String> {
        let k = self.k();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let env = self.container_env(pod, c, &sb.ip).await?;
        let vars: BTreeMap<String, String> = env.iter().cloned().collect();
        let mut mounts = Vec::new();
        let paths = k
            .volumes
            .lock()
            .get(&uid)
            .map(|v| v.paths.clone())
            .unwrap_or_default();
        for vm in c.volume_mounts.iter().flatten() {
            let host = paths.get(&vm.name).ok_or_else(|| {
                format!(
                    "cannot find volume \"{}\" to mount into container \"{}\"",
                    vm.name, c.name
                )
            })?;
            let host = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sp) => host.join(sp),
                None => host.clone(),
            };
            mounts.push(pb::Mount {
                container_path: vm.mount_path.clone(),
                host_path: host.display().to_string(),
                readonly: vm.read_only.unwrap_or(false),
            });
        }
        let dir = self.pod_dir(&uid);
        let hosts = dir.join("etc-hosts");
        let hostname = spec_of(pod)
            .hostname
            .unwrap_or(pod.metadata.name.clone().unwrap_or_default());
        write_file(
            &hosts,
            podenv::etc_hosts(&sb.ip, &hostname, None).as_bytes(),
        )?;
        let resolv = dir.join("resolv.conf");
        write_file(&resolv, self.pod_dns(pod).resolv_conf().as_bytes())?;
        if !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            mounts.push(pb::Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts.display().to_string(),
                readonly: false,
            });
        }
        if !mounts
            .iter()
            .any(|m| m.container_path == "/etc/resolv.conf")
        {
            mounts.push(pb::Mount {
                container_path: "/etc/resolv.conf".into(),
                host_path: resolv.display().to_string(),
                readonly: false,
            });
        }
        let expand = |v: &Option<Vec<String>>| -> Vec<String> {
            v.iter()
                .flatten()
                .map(|s| podenv::expand(s, &vars))
                .collect()
        };
        let mut labels = HashMap::new();
        labels.insert(
            LABEL_POD_NAME.to_string(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        labels.insert(
            LABEL_POD_NAMESPACE.to_string(),
            pod.metadata.namespace.clone().unwrap_or_default(),
        );
        labels.insert(LABEL_POD_UID.to_string(), uid.clone());
        labels.insert(LABEL_CONTAINER_NAME.to_string(), c.name.clone());
        let grace = spec_of(pod)
            .termination_grace_period_seconds
            .unwrap_or(DEFAULT_GRACE_S);
        let annotations = HashMap::from([
            (
                "io.kubernetes.container.restartCount".to_string(),
                attempt.to_string(),
            ),
            (ANNOTATION_GRACE.to_string(), grace.to_string()),
        ]);
        Ok(pb::ContainerConfig {
            metadata: Some(pb::ContainerMetadata {
                name: c.name.clone(),
                attempt,
            }),
            image: Some(pb::ImageSpec {
                image: c.image.clone().unwrap_or_default(),
                annotations: HashMap::new(),
            }),
            command: expand(&c.command),
            args: expand(&c.args),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            envs: env
                .into_iter()
                .map(|(key, value)| pb::KeyValue { key, value })
                .collect(),
            mounts,
            labels,
            annotations,
            log_path: format!("{}/{attempt}.log", c.name),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
        })
    }

    async fn get_object(&self, kind: &str, ns: &str, name: &str) -> Result<Value, String> {
        let path = format!("/api/v1/namespaces/{ns}/{kind}s/{name}");
        self.k()
            .client
            .request("GET", &path, None)
            .await
            .map_err(|e| match e {
                ClientError::Api { code: 404, .. } => format!("{kind} \"{name}\" not found"),
                e => format!("getting {kind} {ns}/{name}: {e}"),
            })
    }

    fn field_ref(&self, pod: &Pod, path: &str, pod_ip: &str) -> Result<String, String> {
        let m = &pod.metadata;
        let spec = spec_of(pod);
        let map_key = |p: &str, prefix: &str| -> Option<String> {
            p.strip_prefix(prefix)?
                .strip_suffix("']")
                .map(str::to_owned)
        };
        Ok(match path {
            "metadata.name" => m.name.clone().unwrap_or_default(),
            "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
            "metadata.uid" => m.uid.clone().unwrap_or_default(),
            "spec.nodeName" => spec.node_name.clone().unwrap_or_default(),
            "spec.serviceAccountName" => spec.service_account_name.clone().unwrap_or_default(),
            "status.hostIP" | "status.hostIPs" => self.k().cfg.node_ip.clone(),
            "status.podIP" | "status.podIPs" => pod_ip.to_string(),
            p => {
                if let Some(l) = map_key(p, "metadata.labels['") {
                    m.labels
                        .as_ref()
                        .and_then(|x| x.get(&l).cloned())
                        .unwrap_or_default()
                } else if let Some(a) = map_key(p, "metadata.annotations['") {
                    m.annotations
                        .as_ref()
                        .and_then(|x| x.get(&a).cloned())
                        .unwrap_or_default()
                } else {
                    return Err(format!("unsupported fieldPath: {p}"));
                }
            }
        })
    }

    fn secret_value(secret: &Value, key: &str) -> Option<String> {
        if let Some(s) = secret["stringData"][key].as_str() {
            return Some(s.to_string());
        }
        let b = secret["data"][key].as_str()?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
        Some(String::from_utf8_lossy(&raw).into_owned())
    }

    /// The environment: service variables, then `envFrom`, then `env`.
    async fn container_env(
        &self,
        pod: &Pod,
        c: &Container,
        pod_ip: &str,
    ) -> Result<Vec<(String, String)>, String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let spec = spec_of(pod);
        let services: Vec<Value> = self
            .k()
            .services
            .lock()
            .as_ref()
            .map(|s| s.read().values().cloned().collect())
            .unwrap_or_default();
        let mut order: Vec<String> = Vec::new();
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let set =
            |k: String, v: String, order: &mut Vec<String>, vars: &mut BTreeMap<String, String>| {
                if !vars.contains_key(&k) {
                    order.push(k.clone());
                }
                vars.insert(k, v);
            };
        for (key, v) in
            podenv::service_env(&services, &ns, spec.enable_service_links.unwrap_or(true))
        {
            set(key, v, &mut order, &mut vars);
        }
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(r) = &from.config_map_ref {
                match self.get_object("configmap", &ns, &r.name).await {
                    Ok(cm) => {
                        for (key, v) in cm["data"].as_object().into_iter().flatten() {
                            set(
                                format!("{prefix}{key}"),
                                v.as_str().unwrap_or("").into(),
                                &mut order,
                                &mut vars,
                            );
                        }
                    }
                    Err(e) if r.optional != Some(true) => return Err(e),
                    Err(_) => {}
                }
            }
            if let Some(r) = &from.secret_ref {
                match self.get_object("secret", &ns, &r.name).await {
                    Ok(s) => {
                        for key in s["data"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(k, _)| k.clone())
                            .collect::<Vec<_>>()
                        {
                            let v = Self::secret_value(&s, &key).unwrap_or_default();
                            set(format!("{prefix}{key}"), v, &mut order, &mut vars);
                        }
                    }
                    Err(e) if r.optional != Some(true) => return Err(e),
                    Err(_) => {}
                }
            }
        }
        for e in c.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                podenv::expand(v, &vars)
            } else if let Some(from) = &e.value_from {
                if let Some(f) = &from.field_ref {
                    self.field_ref(pod, &f.field_path, pod_ip)?
                } else if let Some(r) = &from.config_map_key_ref {
                    match self.get_object("configmap", &ns, &r.name).await {
                        Ok(cm) => match cm["data"][&r.key].as_str() {
                            Some(v) => v.to_string(),
                            None if r.optional == Some(true) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in ConfigMap {ns}/{}",
                                    r.key, r.name
                                ));
                            }
                        },
                        Err(_) if r.optional == Some(true) => continue,
                        Err(e) => return Err(e),
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    match self.get_object("secret", &ns, &r.name).await {
                        Ok(s) => match Self::secret_value(&s, &r.key) {
                            Some(v) => v,
                            None if r.optional == Some(true) => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in Secret {ns}/{}",
                                    r.key, r.name
                                ));
                            }
                        },
                        Err(_) if r.optional == Some(true) => continue,
                        Err(e) => return Err(e),
                    }
                } else if let Some(r) = &from.resource_field_ref {
                    let res = c.resources.as_ref();
                    let pick = |m: Option<
                        &std::collections::BTreeMap<
                            String,
                            ackemu_kube::k8s_openapi::apimachinery::pkg::api::resource::Quantity,
                        >,
                    >,
                                n: &str| {
                        m.and_then(|m| m.get(n)).map(|q| q.0.clone())
                    };
                    let (kind, resource) = r
                        .resource
                        .split_once('.')
                        .unwrap_or(("limits", r.resource.as_str()));
                    let v = if kind == "requests" {
                        pick(res.and_then(|r| r.requests.as_ref()), resource)
                    } else {
                        pick(res.and_then(|r| r.limits.as_ref()), resource)
                    };
                    v.unwrap_or_else(|| {
                        self.k()
                            .cfg
                            .allocatable
                            .get(resource)
                            .cloned()
                            .unwrap_or_default()
                    })
                } else {
                    String::new()
                }
            } else {
                String::new()
            };
            set(e.name.clone(), value, &mut order, &mut vars);
        }
        Ok(order
            .into_iter()
            .map(|k| {
                let v = vars.get(&k).cloned().unwrap_or_default();
                (k, v)
            })
            .collect())
    }

    async fn token(&self, pod: &Pod, audience: Option<&str>, ttl_s: i64) -> Result<String, String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let sa = spec_of(pod)
            .service_account_name
            .unwrap_or("default".into());
        let mut spec = json!({
            "expirationSeconds": ttl_s,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.metadata.name, "uid": pod.metadata.uid},
        });
        if let Some(a) = audience.filter(|a| !a.is_empty()) {
            spec["audiences"] = json!([a]);
        }
        let body =
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
        let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token");
        let v = self
            .k()
            .client
            .request(
                "POST",
                &path,
                Some(("application/json", body.to_string().into_bytes())),
            )
            .await
            .map_err(|e| format!("failed to fetch token: {e}"))?;
        v["status"]["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "failed to fetch token: the TokenRequest has no status.token".into())
    }

    /// Write the pod's volumes (once; projected tokens again at 80% of
    /// their lifetime).
    async fn prepare_volumes(&self, pod: &Pod) -> Result<(), String> {
        let k = self.k();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if k.volumes.lock().contains_key(&uid) {
            return Ok(());
        }
        let v = self.write_volumes(pod).await?;
        k.volumes.lock().insert(uid, v);
        Ok(())
    }

    async fn refresh_token_if_due(&self, pod: &Pod) {
        let k = self.k();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let due = k
            .volumes
            .lock()
            .get(&uid)
            .and_then(|v| v.refresh_at_ms)
            .is_some_and(|t| k.clock.wall_unix_ms() >= t);
        if due {
            match self.write_volumes(pod).await {
                Ok(v) => {
                    k.volumes.lock().insert(uid, v);
                }
                Err(e) => tracing::warn!("refreshing the volumes of pod {}: {e}", pod_desc(pod)),
            }
        }
    }

    async fn write_volumes(&self, pod: &Pod) -> Result<PodVolumes, String> {
        let k = self.k();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let dir = self.pod_dir(&uid).join("volumes");
        let mut paths = HashMap::new();
        let mut refresh_at_ms = None;
        let mount_err =
            |vol: &str, e: String| format!("MountVolume.SetUp failed for volume \"{vol}\" : {e}");
        for vol in spec_of(pod).volumes.iter().flatten() {
            let name = vol.name.clone();
            if let Some(h) = &vol.host_path {
                paths.insert(name, PathBuf::from(&h.path));
                continue;
            }
            if vol.empty_dir.is_some() {
                let p = dir.join("kubernetes.io~empty-dir").join(&name);
                std::fs::create_dir_all(&p).map_err(|e| mount_err(&name, e.to_string()))?;
                paths.insert(name, p);
                continue;
            }
            let mut files: Vec<(String, Vec<u8>)> = Vec::new();
            let plugin;
            if let Some(cm) = &vol.config_map {
                plugin = "kubernetes.io~configmap";
                let obj = self.get_object("configmap", &ns, &cm.name).await;
                match obj {
                    Ok(o) => files.extend(Self::items(&o, cm.items.as_deref(), false)),
                    Err(_) if cm.optional == Some(true) => {}
                    Err(e) => {
                        return Err(mount_err(
                            &name,
                            format!("configmap \"{}\" not found", cm.name).replace(&e, &e),
                        ));
                    }
                }
            } else if let Some(s) = &vol.secret {
                plugin = "kubernetes.io~secret";
                let sname = s.secret_name.clone().unwrap_or_default();
                match self.get_object("secret", &ns, &sname).await {
                    Ok(o) => files.extend(Self::items(&o, s.items.as_deref(), true)),
                    Err(_) if s.optional == Some(true) => {}
                    Err(_) => {
                        return Err(mount_err(&name, format!("secret \"{sname}\" not found")));
                    }
                }
            } else if let Some(d) = &vol.downward_api {
                plugin = "kubernetes.io~downward-api";
                for item in d.items.iter().flatten() {
                    if let Some(f) = &item.field_ref {
                        let v = self
                            .field_ref(pod, &f.field_path, "")
                            .map_err(|e| mount_err(&name, e))?;
                        files.push((item.path.clone(), v.into_bytes()));
                    }
                }
            } else if let Some(p) = &vol.projected {
                plugin = "kubernetes.io~projected";
                for src in p.sources.iter().flatten() {
                    if let Some(t) = &src.service_account_token {
                        let ttl = t.expiration_seconds.unwrap_or(TOKEN_TTL_S);
                        let tok = self
                            .token(pod, t.audience.as_deref(), ttl)
                            .await
                            .map_err(|e| mount_err(&name, e))?;
                        files.push((t.path.clone(), tok.into_bytes()));
                        refresh_at_ms = Some(k.clock.wall_unix_ms() + ttl * 800);
                    }
                    if let Some(cm) = &src.config_map {
                        match self.get_object("configmap", &ns, &cm.name).await {
                            Ok(o) => files.extend(Self::items(&o, cm.items.as_deref(), false)),
                            Err(_) if cm.optional == Some(true) => {}
                            Err(_) => {
                                return Err(mount_err(
                                    &name,
                                    format!("configmap \"{}\" not found", cm.name),
                                ));
                            }
                        }
                    }
                    if let Some(s) = &src.secret {
                        match self.get_object("secret", &ns, &s.name).await {
                            Ok(o) => files.extend(Self::items(&o, s.items.as_deref(), true)),
                            Err(_) if s.optional == Some(true) => {}
                            Err(_) => {
                                return Err(mount_err(
                                    &name,
                                    format!("secret \"{}\" not found", s.name),
                                ));
                            }
                        }
                    }
                    if let Some(d) = &src.downward_api {
                        for item in d.items.iter().flatten() {
                            if let Some(f) = &item.field_ref {
                                let v = self
                                    .field_ref(pod, &f.field_path, "")
                                    .map_err(|e| mount_err(&name, e))?;
                                files.push((item.path.clone(), v.into_bytes()));
                            }
                        }
                    }
                }
            } else {
                continue;
            }
            let p = dir.join(plugin).join(&name);
            std::fs::create_dir_all(&p).map_err(|e| mount_err(&name, e.to_string()))?;
            for (f, data) in files {
                write_file(&p.join(&f), &data).map_err(|e| mount_err(&name, e))?;
            }
            paths.insert(name, p);
        }
        Ok(PodVolumes {
            paths,
            refresh_at_ms,
        })
    }

    fn items(
        obj: &Value,
        items: Option<&[ackemu_kube::api::core::v1::KeyToPath]>,
        secret: bool,
    ) -> Vec<(String, Vec<u8>)> {
        let get = |key: &str| -> Option<Vec<u8>> {
            if secret {
                Self::secret_value(obj, key).map(String::into_bytes)
            } else {
                obj["data"][key]
                    .as_str()
                    .map(|s| s.as_bytes().to_vec())
                    .or_else(|| {
                        obj["binaryData"][key]
                            .as_str()
                            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    })
            }
        };
        match items {
            Some(items) if !items.is_empty() => items
                .iter()
                .filter_map(|i| get(&i.key).map(|d| (i.path.clone(), d)))
                .collect(),
            _ => obj["data"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| get(k).map(|d| (k.clone(), d)))
                .collect(),
        }
    }

    /// Send the pod's status if it changed; returns the phase.
    async fn send_status(
        &self,
        pod: &Pod,
        rt: &PodRuntimeStatus,
        terminating: bool,
    ) -> Option<String> {
        let k = self.k();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut spec = spec_of(pod);
        if terminating {
            spec.restart_policy = Some("Never".into());
        }
        let waiting = if terminating {
            HashMap::new()
        } else {
            k.waiting.lock().get(&uid).cloned().unwrap_or_default()
        };
        let probes = spec.containers.clone();
        let ready = |id: &str| self.probe_result(id, ProbeKind::Readiness, &probes, rt);
        let started = |id: &str| self.probe_result(id, ProbeKind::Startup, &probes, rt);
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
        for _ in 0..3 {
            let mut cur = match k.client.request("GET", &path, None).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("Failed to get status for pod pod=\"{ns}/{name}\": {e}");
                    return None;
                }
            };
            if cur["metadata"]["uid"] != uid.as_str() {
                return None;
            }
            let now = node::rfc3339(k.clock.wall_unix_ms());
            let st = podstatus::pod_status(
                &spec,
                rt,
                &podstatus::Inputs {
                    runtime_name: &k.runtime_name,
                    host_ip: &k.cfg.node_ip,
                    ready: &ready,
                    started: &started,
                    waiting: &waiting,
                    now: &now,
                    old: &cur["status"],
                },
            );
            let phase = st["phase"].as_str().map(str::to_owned);
            let mut unchanged = cur["status"].clone();
            // The API may add fields we do not set; compare what we set.
            if let Some(o) = unchanged.as_object_mut() {
                o.retain(|key, _| st.get(key).is_some());
            }
            if unchanged == st {
                k.last_status.lock().insert(uid.clone(), st);
                return phase;
            }
            cur["status"] = st.clone();
            match k
                .client
                .request(
                    "PUT",
                    &format!("{path}/status"),
                    Some(("application/json", cur.to_string().into_bytes())),
                )
                .await
            {
                Ok(_) => {
                    tracing::debug!("Patch status for pod pod=\"{ns}/{name}\" phase={phase:?}");
                    k.last_status.lock().insert(uid.clone(), st);
                    return phase;
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => {
                    tracing::warn!("Failed to update status for pod pod=\"{ns}/{name}\": {e}");
                    return phase;
                }
            }
        }
        None
    }

    fn probe_result(
        &self,
        id: &str,
        kind: ProbeKind,
        containers: &[Container],
        rt: &PodRuntimeStatus,
    ) -> bool {
        let name = rt
            .containers
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.as_str());
        let has = containers
            .iter()
            .find(|c| Some(c.name.as_str()) == name)
            .is_some_and(|c| kind.of(c).is_some());
        if !has {
            return true;
        }
        self.k()
            .probes
            .lock()
            .results
            .get(&(id.to_string(), kind))
            .copied()
            .unwrap_or(false)
    }

    fn stop_probes(&self, gone: impl Fn(&str) -> bool, _uid: &str) {
        let mut p = self.k().probes.lock();
        let keys: Vec<(String, ProbeKind)> = p
            .workers
            .keys()
            .filter(|(id, _)| gone(id))
            .cloned()
            .collect();
        for key in keys {
            if let Some(t) = p.workers.remove(&key) {
                t.cancel();
            }
            p.results.remove(&key);
        }
    }

    /// Probe workers for running containers; stop those of containers that
    /// no longer run.
    fn ensure_probes(&self, pod: &Pod, rt: &PodRuntimeStatus) {
        let k = self.k();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = spec_of(pod);
        let running: HashSet<String> = rt
            .containers
            .iter()
            .filter(|c| c.state == pb::ContainerState::ContainerRunning)
            .map(|c| c.id.clone())
            .collect();
        let mine: HashSet<String> = rt.containers.iter().map(|c| c.id.clone()).collect();
        self.stop_probes(|id| mine.contains(id) && !running.contains(id), &uid);
        let Some(sb) = rt.sandbox().filter(|s| s.ready).cloned() else {
            return;
        };
        for c in &spec.containers {
            let Some(st) = rt
                .latest(&c.name)
                .filter(|s| s.state == pb::ContainerState::ContainerRunning)
            else {
                continue;
            };
            for kind in [
                ProbeKind::Startup,
                ProbeKind::Readiness,
                ProbeKind::Liveness,
            ] {
                let Some(p) = kind.of(c).cloned() else {
                    continue;
                };
                let key = (st.id.clone(), kind);
                let mut ps = k.probes.lock();
                if ps.workers.contains_key(&key) {
                    continue;
                }
                if kind == ProbeKind::Startup && ps.results.get(&key) == Some(&true) {
                    continue;
                }
                let token = k.tasks.token().child_token();
                ps.workers.insert(key.clone(), token.clone());
                ps.results.insert(key.clone(), kind == ProbeKind::Liveness);
                drop(ps);
                let target = probe::Target {
                    pod_ip: sb.ip.clone(),
                    netns: PathBuf::from(&sb.netns),
                    container_id: st.id.clone(),
                };
                let me = self.clone();
                let c = c.clone();
                let pod = pod.clone();
                let uid = uid.clone();
                let has_startup = c.startup_probe.is_some();
                k.tasks.spawn(
                    format!(
                        "kubelet/probe {} {}/{}",
                        kind.name().to_lowercase(),
                        pod_desc(&pod),
                        c.name
                    ),
                    async move {
                        tokio::select! {
                            () = token.cancelled() => {}
                            () = me.probe_loop(kind, p, c, target, pod, uid, has_startup) => {}
                        }
                    },
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn probe_loop(
        &self,
        kind: ProbeKind,
        p: ackemu_kube::api::core::v1::Probe,
        c: Container,
        target: probe::Target,
        pod: Pod,
        uid: String,
        has_startup: bool,
    ) {
        let k = self.k();
        let id = target.container_id.clone();
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        k.clock
            .sleep(Duration::from_secs(
                p.initial_delay_seconds.unwrap_or(0).max(0) as u64,
            ))
            .await;
        let mut tracker = Tracker::new(kind, &p);
        let r = pod_ref(&pod, &container_path(&c, false));
        loop {
            let started = !has_startup
                || kind == ProbeKind::Startup
                || k.probes
                    .lock()
                    .results
                    .get(&(id.clone(), ProbeKind::Startup))
                    == Some(&true);
            if started {
                let res = probe::check(&p, &c, &target, &k.cri, &k.tasks, &k.clock).await;
                if let Err(msg) = &res {
                    k.recorder.record(
                        &r,
                        Kind::Warning,
                        "Unhealthy",
                        &format!("{} probe failed: {msg}", kind.name()),
                    );
                }
                let changed = tracker.observe(res.is_ok());
                let mut notify = changed;
                {
                    let mut ps = k.probes.lock();
                    ps.results.insert((id.clone(), kind), tracker.result);
                    if kind == ProbeKind::Liveness && !tracker.result {
                        ps.liveness_failed.insert(id.clone());
                    }
                    if kind == ProbeKind::Startup && tracker.failed() {
                        ps.startup_failed.insert(id.clone());
                        notify = true;
                    }
                }
                if notify && k.wake_tx.try_send(uid.clone()).is_err() {
                    tracing::warn!(
                        "probe result queue is full; pod {} resyncs on its own",
                        pod_desc(&pod)
                    );
                }
                let done = (kind == ProbeKind::Startup && (tracker.result || tracker.failed()))
                    || (kind == ProbeKind::Liveness && !tracker.result);
                if done {
                    return;
                }
            }
            k.clock.sleep(period).await;
        }
    }
}
